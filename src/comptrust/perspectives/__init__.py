"""Trust dimensions (DecodingTrust perspectives) and benign tasks, behind one interface."""

from .base import Perspective, PerspectiveContext, get_perspective, list_perspectives, register

__all__ = ["Perspective", "PerspectiveContext", "get_perspective", "list_perspectives", "register"]
