"""The browser tests' fixtures (tests/support/browser.py): Chromium, pages watched for problems,
hub processes to point them at (``python -m hub serve``, as a user starts it), and a plain
HTTP client."""

from tests.support.browser import browser, open_page, session, start_hub

__all__ = ["browser", "open_page", "session", "start_hub"]  # fixtures, found by name
