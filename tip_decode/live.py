"""Stable import path of the live monitor (`tip_decode.analysis.live`), kept for code written against it."""

from tip_decode.analysis.live import LiveMonitor, LiveSwitchEvent
from tip_decode.analysis.signals import token_id_of

__all__ = ["LiveMonitor", "LiveSwitchEvent", "token_id_of"]
