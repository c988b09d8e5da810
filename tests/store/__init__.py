"""The Lua protocol through TimerStore, against the session's real redis-server."""
