"""TLS (optionally mutual) for the REST listener, from the same PEM settings as gRPC's."""

from __future__ import annotations

import os
import ssl
import tempfile

from servingd.apis.tls import TlsSettings


def server_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """An SSLContext serving `tls`'s certificate; requires client certs when client_verify.

    Python's ssl loads keys only from files: the PEM text is written to a private
    temporary directory (mode 0700), loaded and removed at once.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="servingd-tls-") as private:
        os.chmod(private, 0o700)
        key_path = os.path.join(private, "server.key")
        cert_path = os.path.join(private, "server.crt")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as key_file:
            key_file.write(tls.server_key)
        with open(cert_path, "wb") as cert_file:
            cert_file.write(tls.server_cert)
        context.load_cert_chain(cert_path, key_path)
    if tls.custom_ca:
        context.load_verify_locations(cadata=tls.custom_ca.decode())
    context.verify_mode = ssl.CERT_REQUIRED if tls.client_verify else ssl.CERT_NONE
    return context
