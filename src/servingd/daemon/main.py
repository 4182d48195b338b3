"""servingd's entry point: command line + config files -> settings -> Service on uvloop.

servingd --config=/etc/servingd/servingd.yaml          serve (systemd's ExecStart=)
servingd --check-config --config=/etc/servingd/...     validate only: exit 0 or 1
servingd --model_name=m --model_base_path=/models/m    as tensorflow_model_server
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from servingd import __version__
from servingd.config.errors import ConfigError
from servingd.config.flags import not_applicable_flags, parse_flags
from servingd.config.load import load_settings
from servingd.daemon.heap_reuse import apply_allocator_settings
from servingd.daemon.logging_setup import configure_logging

log = logging.getLogger("servingd")


class _EarlyHangup:
    """Until the event loop takes over SIGHUP, one arriving is remembered, not fatal
    (its default action would kill the daemon while TensorFlow is still importing)."""

    def __init__(self) -> None:
        self.pending = False
        signal.signal(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self, _signum: int, _frame: FrameType | None) -> None:
        self.pending = True


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_flags(argv)
    if args.version:
        sys.stdout.write(f"servingd {__version__} (TensorFlow Serving API compatible)\n")
        return 0
    hangup = None if args.check_config else _EarlyHangup()
    # stderr until the configuration says otherwise (config errors must reach someone).
    configure_logging(args.log_level, "stderr")
    if not args.check_config:
        apply_allocator_settings()  # before the servers allocate and the first model loads
    try:
        settings = load_settings(argv)
        from servingd.daemon.checks import check_machine

        check_machine(settings)
    except ConfigError as exc:
        log.error("configuration refused: %s", exc, extra={"CONFIG_FILE": exc.path})
        return 1
    for flag, reason in not_applicable_flags(args).items():
        log.warning("--%s has no effect in servingd: %s", flag, reason)
    if args.check_config:
        from servingd.daemon.checks import missing_base_paths

        for warning in missing_base_paths(settings.models):
            log.warning("%s", warning)
        log.info(
            "configuration OK: %s, %d model(s)",
            settings.config_file or "command line",
            len(settings.models),
        )
        return 0
    configure_logging(settings.log_level, settings.log_target, replace=True)
    import uvloop

    from servingd.daemon.service import Service

    service = Service(argv, settings)
    try:
        return int(uvloop.run(service.run(lambda: bool(hangup and hangup.pending))))
    except (OSError, RuntimeError) as exc:  # a port in use (grpc raises RuntimeError)
        log.error("cannot serve: %s", exc)  # one line for systemctl status; exit 1
        return 1


if __name__ == "__main__":
    sys.exit(main())
