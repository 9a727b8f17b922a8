"""Pure domain model: instruments, orders, fills, positions, money. No I/O, no appliance imports."""
