"""redistimers.testing.RedisServer: a throwaway real redis-server for tests and demos."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
import redis

from redistimers import ConfigurationError
from redistimers.testing import ENV_BINARY, RedisServer, RedisServerError, find_redis_server


@pytest.fixture
def real_binary(monkeypatch: pytest.MonkeyPatch) -> str:
    """The redis-server found without the environment variable, which is then unset."""
    monkeypatch.delenv(ENV_BINARY, raising=False)
    return find_redis_server()


def _answers_ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False
    finally:
        client.close()


def test_context_manager_yields_a_url_that_answers_ping_and_stops_the_server_on_exit() -> None:
    server = RedisServer()
    with server as url:
        assert url == server.url
        assert url.startswith("redis://127.0.0.1:")
        assert server.running
        assert _answers_ping(url)
    assert not server.running
    assert not _answers_ping(url)
    assert not server.directory.exists()


def test_unix_socket_server_answers_ping_at_a_unix_url() -> None:
    server = RedisServer(unix_socket=True)
    with server as url:
        assert url.startswith("unix://")
        assert server.socket_path is not None
        assert stat.S_ISSOCK(server.socket_path.stat().st_mode)
        assert _answers_ping(url)
        client = server.client()
        try:
            client.set("k", "v")
            assert client.get("k") == b"v"
        finally:
            client.close()


def test_restart_with_appendonly_keeps_the_data_at_the_same_url() -> None:
    server = RedisServer(appendonly=True)
    try:
        url = server.start()
        client = server.client()
        client.set("survivor", "still here")
        client.zadd("zset", {"a": 1.5})
        client.close()

        assert server.restart() == url
        assert server.running

        client = server.client()
        assert client.get("survivor") == b"still here"
        assert client.zscore("zset", "a") == 1.5
        client.close()
    finally:
        server.close()


def test_stop_then_start_serves_again_at_the_same_url() -> None:
    server = RedisServer()
    try:
        url = server.start()
        server.stop()
        assert not server.running
        assert not _answers_ping(url)
        assert server.start() == url
        assert _answers_ping(url)
    finally:
        server.close()


def test_binary_named_by_environment_variable_is_the_one_found(
    real_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_BINARY, real_binary)
    assert find_redis_server() == real_binary
    server = RedisServer()
    assert server.executable == real_binary
    with server as url:
        assert _answers_ping(url)


def test_binary_named_by_environment_variable_is_the_one_started(
    real_binary: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A wrapper that leaves a mark, then runs the real server: only the variable names it.
    marker = tmp_path / "wrapper-ran"
    wrapper = tmp_path / "my-redis-server"
    wrapper.write_text(f'#!/bin/sh\necho "$@" > "{marker}"\nexec "{real_binary}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv(ENV_BINARY, str(wrapper))

    with RedisServer() as url:
        assert _answers_ping(url)
    assert marker.exists()
    assert "--port" in marker.read_text()


def test_non_executable_path_in_environment_variable_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_executable = tmp_path / "redis-server"
    not_executable.write_text("not a program\n")
    not_executable.chmod(0o644)
    monkeypatch.setenv(ENV_BINARY, str(not_executable))

    with pytest.raises(RedisServerError, match=ENV_BINARY) as info:
        find_redis_server()
    assert str(not_executable) in str(info.value)
    assert "not an executable" in str(info.value)

    with pytest.raises(RedisServerError, match=ENV_BINARY):
        RedisServer()


def test_missing_path_in_environment_variable_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "redis-server"
    monkeypatch.setenv(ENV_BINARY, str(missing))
    with pytest.raises(RedisServerError, match=ENV_BINARY) as info:
        RedisServer()
    assert str(missing) in str(info.value)


def test_server_that_cannot_open_its_unix_socket_fails_with_its_log_in_the_error(
    tmp_path: Path,
) -> None:
    server = RedisServer(config={"unixsocket": str(tmp_path / "no-such-dir" / "redis.sock")})
    try:
        with pytest.raises(RedisServerError) as info:
            server.start()
        assert not server.running
    finally:
        server.close()
    message = str(info.value)
    assert "exited with code" in message
    # The reason is only in redis-server's log file, not on its stderr.
    assert "Unix socket" in message
    assert "No such file or directory" in message


def test_server_whose_port_another_redis_server_holds_fails_with_its_log_in_the_error() -> None:
    # What happens when another process takes the free port between its choice and bind.
    holder = RedisServer()
    with holder as url:
        clash = RedisServer(port=holder.port)
        try:
            with pytest.raises(RedisServerError) as info:
                clash.start()
            assert not clash.running
        finally:
            clash.close()
        assert "Address already in use" in str(info.value)
        assert _answers_ping(url)  # the server holding the port is unharmed


def test_server_whose_port_a_silent_listener_holds_fails_with_its_log_in_the_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # accepts connections, never answers
        server = RedisServer(port=listener.getsockname()[1])
        try:
            with pytest.raises(RedisServerError) as info:
                server.start()
            assert not server.running
        finally:
            server.close()
    assert "Address already in use" in str(info.value)


def test_server_with_bad_configuration_fails_with_redis_servers_complaint() -> None:
    server = RedisServer(config={"no-such-directive": "1"})
    try:
        with pytest.raises(RedisServerError) as info:
            server.start()
    finally:
        server.close()
    message = str(info.value)
    assert "no-such-directive" in message
    assert not server.running


def test_a_running_server_refuses_a_second_start() -> None:
    server = RedisServer()
    try:
        server.start()
        with pytest.raises(ConfigurationError, match="already running"):
            server.start()
        assert server.running
    finally:
        server.close()


def test_sigkilled_server_restarts_at_the_same_url() -> None:
    server = RedisServer()
    try:
        url = server.start()
        server.kill()
        assert not server.running
        assert not _answers_ping(url)
        assert server.start() == url
        assert _answers_ping(url)
    finally:
        server.close()
