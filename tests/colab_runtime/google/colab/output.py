"""Colab's output helpers, simulated: only the switch to the custom (ipywidgets 8) widget manager."""

from types import SimpleNamespace

from google.colab import record

# Like Colab's: where the manager's script is, once it is switched on (None before).
_widgets = SimpleNamespace(_installed_url=None)
MANAGER_URL = "https://colab.example/custom-widget-manager/manager.min.js"


def enable_custom_widget_manager() -> None:
    """Like Colab's: lets the front end render ipywidgets 8 and notes the manager's script; here it is recorded."""
    _widgets._installed_url = MANAGER_URL
    record("enable_custom_widget_manager")
