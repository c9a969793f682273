"""moto's S3 server as a subprocess on loopback, standing in for S3 or MinIO."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.devstack import (
    LOOPBACK,
    free_ports,
    has_exited,
    http_ok,
    log_tail,
    spawn,
    stop_process_group,
    wait_until,
)

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


class S3ServerError(RuntimeError):
    pass


@dataclass
class S3Server:
    port: int
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    @property
    def host_port(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host_port}"

    def env(self) -> dict[str, str]:
        """The AWS variables a child process (tritonserver, a worker) needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )

    def is_running(self) -> bool:
        return self.process is not None and not has_exited(self.process)

    def stop(self) -> None:
        stop_process_group(self.process, grace=5.0)


def start_s3_server(*, log_dir: Path, port: int | None = None, timeout: float = 30.0) -> S3Server:
    port = port or free_ports(1)[0]
    log_path = Path(log_dir) / f"moto-{port}.log"
    process = spawn(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)], log_path=log_path
    )
    server = S3Server(port=port, log_path=log_path, process=process)
    if not wait_until(lambda: http_ok(f"{server.endpoint_url}/moto-api/") or has_exited(process), timeout=timeout) or has_exited(process):
        server.stop()
        raise S3ServerError(
            f"moto S3 server on {server.host_port} did not answer within {timeout:.0f} s.\n"
            f"--- {log_path} ---\n{log_tail(log_path)}"
        )
    return server




def ensure_bucket(client, bucket: str) -> None:
    try:
        client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=bucket)
