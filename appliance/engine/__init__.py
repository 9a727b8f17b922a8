"""The event loop: clock, message dispatch, the single writer."""
