"""A process and its threads as /proc shows them: name, nice value and CPU time per thread;
the process's page faults and resident memory."""

from __future__ import annotations

from pathlib import Path

# TensorFlow's inter-op threads (the pool a run hands its ops to, unless it runs them in
# the calling thread).
TF_INTER_OP = "tf_Compute"


def threads(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (name, nice, CPU ticks so far) for every thread of `pid`."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = _fields_after_name(stat)
        # fields[0] is stat's 3rd field: utime and stime are the 14th and 15th, nice the 19th
        out[int(task.name)] = (name, int(fields[16]), int(fields[11]) + int(fields[12]))
    return out


def minor_faults(pid: int) -> int:
    """Minor page faults of `pid` so far, all its threads (stat's 10th field)."""
    return int(_fields_after_name(Path(f"/proc/{pid}/stat").read_text())[7])


def resident_bytes(pid: int) -> int:
    """Resident memory of `pid` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _fields_after_name(stat: str) -> list[str]:
    """A stat line's fields from its 3rd on (the name before them may hold spaces)."""
    return stat[stat.rindex(")") + 2 :].split()


def cpu_ticks(pid: int, name: str) -> int:
    """CPU ticks so far of the threads of `pid` called `name`."""
    return sum(ticks for thread, _, ticks in threads(pid).values() if thread == name)
