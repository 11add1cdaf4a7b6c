"""The staff-wide back office: admin toolkit, dashboard, login lockout, operator commands."""
