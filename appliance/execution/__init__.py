"""Execution: the order management system (OMS); later routing and execution algorithms."""
