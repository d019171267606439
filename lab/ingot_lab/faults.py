"""Faults a virtual BMC can be told to show (see ``ingot-lab vbmc fault``)."""

import dataclasses


@dataclasses.dataclass
class Faults:
    """Per-BMC faults: ``drop`` share (0..1) of incoming packets silently dropped, ``delay`` seconds
    before each packet is handled (so before its reply), ``max_sessions`` (None: no limit) after
    which an Open Session Request is refused with RMCP+ status 0x01, like a BMC out of slots;
    ``next_boot_only``: a persistent boot override is accepted but kept for the next boot only, as
    many real BMCs silently do."""

    drop: float = 0.0
    delay: float = 0.0
    max_sessions: int = None
    next_boot_only: bool = False

    @classmethod
    def from_dict(cls, data):
        data = data or {}
        max_sessions = data.get('max_sessions')
        return cls(drop=min(1.0, max(0.0, float(data.get('drop', 0) or 0))),
                   delay=max(0.0, float(data.get('delay', 0) or 0)),
                   max_sessions=int(max_sessions) if max_sessions not in (None, '') else None,
                   next_boot_only=bool(data.get('next_boot_only', False)))

    def to_dict(self):
        return dataclasses.asdict(self)
