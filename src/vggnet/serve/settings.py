"""`ServeSettings`: how `vggnet serve` batches, limits and guards, validated once (torch-free, for the CLI)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """The server's knobs; each is the `vggnet serve` flag of the same name.

    >>> from vggnet.serve import ServeSettings
    >>> ServeSettings(max_batch_size=16).max_upload_bytes
    20971520
    >>> ServeSettings(max_queue=0)
    Traceback (most recent call last):
    ValueError: --max-queue must be at least 1, got 0

    Args:
        max_batch_size: Requests that arrive together run as one batch of at most this many images (1: no batching).
        max_delay_ms: How long a batch may wait for company: for requests that have arrived and are being decoded
            (a lone request never waits).
        max_upload_mb: Larger request bodies get 413 before they are read.
        max_queue: Images waiting for the model beyond this get 503 with `Retry-After`.
        api_key: When set, every route but the health checks and the static pages needs `Authorization: Bearer KEY`.
        cors_origins: Origins that browsers may call the API from (none by default).
        topk: Classes per image when a request does not say (`?topk=`).
    """

    max_batch_size: int = 8
    max_delay_ms: float = 5.0
    max_upload_mb: float = 20.0
    max_queue: int = 64
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    topk: int = 5

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "topk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value!r}")
        if not self.max_delay_ms >= 0:
            raise ValueError(f"--max-delay-ms must be 0 or more, got {self.max_delay_ms!r}")
        if not self.max_upload_mb > 0:
            raise ValueError(f"--max-upload-mb must be positive, got {self.max_upload_mb!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("--api-key is empty; pass a key, or leave it out to serve without one")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
