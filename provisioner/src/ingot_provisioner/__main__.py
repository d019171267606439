"""Command line: ``python -m ingot_provisioner serve|migrate|check-config|gen-token|version``."""

from __future__ import annotations

import argparse
import logging
import logging.config
import secrets
import sys

from . import __version__
from .config import DEFAULT_CONFIG, ConfigError, check_settings, load_settings
from .db import Database, redact_url
from .logsafe import log_config, register_secret


def _load(args):
    overrides = {}
    if getattr(args, "host", None):
        overrides["listen_address"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    return load_settings(args.config, overrides=overrides)


def _database(settings) -> Database:
    return Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous,
                    busy_timeout_ms=settings.sqlite_busy_timeout_ms)


def cmd_check(args) -> int:
    settings = _load(args)
    problems = check_settings(settings)
    for problem in problems:
        print(f"ingot-provisioner: config: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"configuration ok: listen {settings.listen_address}:{settings.port}, "
          f"database {redact_url(settings.database_url)}, public URL {settings.base_url}, "
          f"image store {settings.image_dir}, deploy timeout {settings.deploy_timeout:g} s, {_view_text(settings)}")
    return 0


def _view_text(settings) -> str:
    if not settings.view_enabled:
        return "web view off"
    who = "the admin token or the view token" if settings.view_token_value() else "the admin token (no view token)"
    return f"web view at {settings.view_path}/ for {who}"


def cmd_migrate(args) -> int:
    settings = _load(args)
    logging.config.dictConfig(log_config(settings.log_level))
    db = _database(settings)
    db.migrate()
    print(f"database {redact_url(settings.database_url)} at revision {db.current_revision()}")
    db.dispose()
    return 0


def cmd_serve(args) -> int:
    if args.check_config:
        return cmd_check(args)
    settings = _load(args)
    problems = check_settings(settings)
    if problems:
        for problem in problems:
            print(f"ingot-provisioner: config: {problem}", file=sys.stderr)
        return 2
    import uvicorn

    from .api import create_app

    register_secret(settings.admin_token_value())
    cfg = log_config(settings.log_level)
    logging.config.dictConfig(cfg)
    log = logging.getLogger("ingot_provisioner")
    db = _database(settings)
    if settings.auto_migrate:
        db.migrate()
    log.info("ingot-provisioner %s: database %s (revision %s), public URL %s", __version__,
             redact_url(settings.database_url), db.current_revision(), settings.base_url)
    app = create_app(settings, db)
    uvicorn.run(app, host=settings.listen_address, port=settings.port, log_config=cfg,
                access_log=settings.access_log, log_level=settings.log_level, timeout_graceful_shutdown=10,
                server_header=False)
    db.dispose()
    return 0


def cmd_gen_token(_args) -> int:
    print(secrets.token_urlsafe(32))
    return 0


def cmd_version(_args) -> int:
    print(__version__)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingot_provisioner",
                                     description="ingot.metal provisioner: node registry, boot artifacts, deploy agent")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--config", "-c", default=None,
                       help=f"YAML configuration file (default {DEFAULT_CONFIG} if it exists; "
                            "INGOT_PROVISIONER_* environment variables override it)")
        return p

    serve = with_config(sub.add_parser("serve", help="apply migrations and serve the API with uvicorn"))
    serve.add_argument("--host", help="override listen_address")
    serve.add_argument("--port", type=int, help="override port")
    serve.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    serve.set_defaults(func=cmd_serve)
    with_config(sub.add_parser("migrate", help="apply the schema migrations and exit")).set_defaults(func=cmd_migrate)
    with_config(sub.add_parser("check-config", help="validate the configuration")).set_defaults(func=cmd_check)
    sub.add_parser("gen-token", help="print a new random admin token").set_defaults(func=cmd_gen_token)
    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"ingot-provisioner: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
