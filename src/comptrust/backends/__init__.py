from .base import Backend, GenItem, GenOut, LoglikItem

__all__ = ["Backend", "GenItem", "GenOut", "LoglikItem"]
