"""Colab's output helpers, simulated: only the switch to the custom (ipywidgets 8) widget manager."""

from google.colab import record


def enable_custom_widget_manager() -> None:
    """Like Colab's: lets the front end render ipywidgets 8; here it is only recorded."""
    record("enable_custom_widget_manager")
