"""Venues: the Venue protocol, the paper venue (paper/), and later live CCXT venues (ccxt/)."""
