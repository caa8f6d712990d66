"""``python -m review <command>``: the operator's entry point.

Errors meant for people (:class:`review.errors.ReviewError`) are printed as one line on stderr
without a traceback, and the command exits with status 2. ``ingest`` exits with status 1 when
any record was rejected (the good ones are stored all the same).
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Select, func, select
from tqdm import tqdm

from db import schema
from db.models import Post
from db.session import outage_message, outage_reason, safe_url
from review.config import Settings, load_settings
from review.desk import Desk, open_desk
from review.errors import ConfigError, ReviewError, SchemaOutOfDate
from review.inference import load_provider
from review.inference.base import ModelUnavailable, Provider
from review.ingest import IngestReport, ingest_paths
from review.metrics import MetricFilter
from review.text import shown

if TYPE_CHECKING:
    from review.purge import Erasure
    from review.scoring import Scorer

EXIT_REJECTED = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3


def _progress(label: str, total: int) -> Callable[[int], None]:
    """A tqdm bar on stderr that appears only when the input takes more than a second."""
    bar = tqdm(total=total, desc=shown(Path(label).name), unit="rec", delay=1.0, leave=False)

    def update(done: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def cmd_db(args: argparse.Namespace) -> int:
    settings = load_settings()
    desk = open_desk(settings, check_schema=False)
    where = safe_url(settings.database_url)
    if args.db_command == "upgrade":
        schema.upgrade(desk.engine, args.revision)
        print(f"{where}: schema at {schema.current_revision(desk.engine)} (head {schema.head_revision()})")
    elif args.db_command == "downgrade":
        schema.downgrade(desk.engine, args.revision)
        print(f"{where}: schema at {schema.current_revision(desk.engine) or 'base (empty)'}")
    elif args.db_command == "rebuild-labels":
        from db.session import writing
        from review import labels

        schema.require_current(desk.engine)
        with writing(desk.sessions) as session:
            rows = labels.rebuild(session)
        print(f"{where}: post_label rebuilt, {rows} settled posts")
    else:
        try:
            schema.require_current(desk.engine)
        except SchemaOutOfDate as exc:
            print(f"out of date: {exc}")
            return EXIT_REJECTED
        print(f"{where}: schema at {schema.head_revision()} (up to date)")
    return 0


def _print_report(report: IngestReport, verbose_warnings: bool = True) -> None:
    for rejection in report.rejected:
        print(f"rejected {rejection}", file=sys.stderr)
    if verbose_warnings:
        for warning in report.warnings:
            print(f"warning {warning}", file=sys.stderr)
    for path, encoding in report.encodings.items():
        if encoding not in ("utf-8", "utf-8-sig"):
            print(f"note: read {shown(path)} as {encoding}", file=sys.stderr)
    print(report.summary())


def cmd_ingest(args: argparse.Namespace) -> int:

    desk = open_desk()
    report = ingest_paths(
        desk.sessions,
        [Path(p) for p in args.paths],
        desk.settings,
        source=args.source,
        encoding=args.encoding,
        allow_absolute_paths=args.allow_absolute_paths,
        workers=args.workers,
        progress=None if args.quiet else _progress,
    )
    _print_report(report)
    return EXIT_REJECTED if report.rejected else 0


def cmd_media(args: argparse.Namespace) -> int:
    from review.auth import OPERATOR
    from review.media import collect_garbage

    desk = open_desk()
    if args.min_age < 0:
        raise ReviewError("--min-age is a number of minutes, 0 or more")
    found = collect_garbage(
        desk.sessions, desk.settings.media_dir, OPERATOR, delete=args.delete, min_age=timedelta(minutes=args.min_age)
    )
    verb = "removed" if found.deleted else "would remove"
    for rel, size in found.files:
        print(f"{verb} {size:>12,}  {shown(rel)}")
    for rel, why in found.failed:
        print(f"could not remove {shown(rel)}: {why}", file=sys.stderr)
    print(found.summary())
    if not found.deleted and found.files:
        print("dry run: nothing was removed (python -m review media gc --delete removes them)")
    return EXIT_ERROR if found.failed else 0


def _post_count(desk: Desk) -> int:
    with desk.sessions() as session:
        return session.scalar(select(func.count(Post.id))) or 0


def cmd_demo(args: argparse.Namespace) -> int:
    from review.demo import load_demo
    from review.scoring import unscored_count

    desk = open_desk()
    if args.history:
        return _demo_history(desk)
    existing = _post_count(desk)
    if existing and not args.force:
        print(f"the database already holds {existing} posts; the demo loads only into an empty one (--force adds it)")
        with desk.sessions() as session:
            unscored = unscored_count(session)
        if unscored:
            print(f"{unscored} posts have no verdict yet: python -m review score", file=sys.stderr)
        return 0
    report = load_demo(desk.sessions, desk.settings, progress=_progress)
    _print_report(report, verbose_warnings=False)
    if args.no_score:
        return EXIT_REJECTED if report.rejected else 0
    try:
        provider = make_provider(desk.settings, args)
    except ModelUnavailable as exc:  # a fresh machine: no weights, no network
        from review.signals.baseline import BaselineProvider

        print(f"note: {exc}. Scoring with the baseline rules instead.", file=sys.stderr)
        provider = BaselineProvider()
    from review.scoring import Scorer

    _compute_signals(desk)
    _score(desk, Scorer(desk.sessions, desk.settings, provider))
    return EXIT_REJECTED if report.rejected else 0


def _compute_signals(desk: Desk, limit: int | None = None, quiet: bool = False, posts: Select | None = None) -> None:  # type: ignore[type-arg]
    from review.signals.runner import compute_signals, pending_count

    with desk.sessions() as session:
        total = pending_count(session, posts)
    if limit is not None:
        total = min(total, limit)
    if not total:
        return
    bar = tqdm(total=total, desc="signals (OCR, NSFW, near-duplicates)", unit="image", disable=quiet)
    try:
        stats = compute_signals(
            desk.sessions, desk.settings, limit=limit, posts=posts, progress=lambda n: bar.update(n - bar.n)
        )
    finally:
        bar.close()
    print(stats.summary())


def cmd_signals(args: argparse.Namespace) -> int:
    desk = open_desk()
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    _compute_signals(desk, args.limit, args.quiet)
    from review.signals.runner import pending_count

    with desk.sessions() as session:
        left = pending_count(session)
    print(f"{left} images still without signals" if left else "every image has its signals")
    return 0


def make_provider(settings: Settings, args: argparse.Namespace) -> Provider:
    """The provider named by the command's model arguments (see _model_arguments)."""
    return load_provider(
        settings,
        name=args.provider,
        model=args.model,
        base_url=args.base_url,
        adapter=args.adapter,
        revision=args.revision,
        on_load=lambda model: print(f"loading {model} …", file=sys.stderr),
    )


def cmd_score(args: argparse.Namespace) -> int:
    from review.scoring import Scorer, unscored_query

    desk = open_desk()
    if args.skip_signals and (args.provider or desk.settings.provider) == "baseline":
        raise ConfigError("the baseline provider decides from the signals: drop --skip-signals")
    scorer = Scorer(
        desk.sessions,
        desk.settings,
        make_provider(desk.settings, args),
        batch_size=args.batch_size,
        lease=timedelta(seconds=args.lease_seconds),
        near_duplicates=args.near_duplicates,
        max_new_tokens=args.max_new_tokens,
        ocr_hints=args.ocr_hints,
        retry_wait=args.retry_seconds,
    )
    if not args.skip_signals:  # the images of the posts this run will score
        unscored = unscored_query()
        _compute_signals(desk, quiet=args.quiet, posts=unscored if args.limit is None else unscored.limit(args.limit))
    return _score(desk, scorer, args.limit, args.quiet)


def _score(desk: Desk, scorer: Scorer, limit: int | None = None, quiet: bool = False) -> int:
    """Score unscored posts with a progress bar; Ctrl-C finishes the current batch and stops."""
    from review.scoring import unscored_count

    if scorer.provider.name == "baseline":
        print("scoring with the baseline provider (rules over text, OCR and NSFW signals)", file=sys.stderr)
    with desk.sessions() as session:
        total = unscored_count(session)
    if limit is not None:
        total = min(total, limit)
    stopping = {"requested": False}

    def on_sigint(_signum, _frame):  # type: ignore[no-untyped-def]
        if stopping["requested"]:
            raise KeyboardInterrupt
        stopping["requested"] = True
        print("\nfinishing the current batch, then stopping (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    bar = tqdm(total=total, desc="scoring", unit="post", disable=quiet)
    try:
        stats = scorer.run(limit=limit, should_stop=lambda: stopping["requested"], on_batch=bar.update)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    print(f"{scorer.provider.name} {scorer.provider.model_id}: {stats.summary()}")
    if stats.leased_elsewhere:  # exit 1: posts are left unscored, as an ingest with rejections
        until = f"{stats.leases_end:%Y-%m-%d %H:%M:%S} UTC" if stats.leases_end else "later"
        print(f"error: {stats.leased_elsewhere} posts are still leased by another scoring worker (perhaps one "
              f"that died) and were not scored; the leases end by {until}: run score again then",
              file=sys.stderr)  # fmt: skip
        return EXIT_REJECTED
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from review.followup import Turn, ask, conversation_json, load_post

    if args.max_new_tokens < 1:
        raise ConfigError("--max-new-tokens must be at least 1")
    desk = open_desk()
    settings = desk.settings
    with desk.sessions() as session:
        post = load_post(session, settings, args.post_id)
    provider = make_provider(settings, args)
    interactive = args.question is None and sys.stdin.isatty()

    def typed() -> Iterator[str]:
        while True:
            try:
                yield input("question> ")
            except EOFError:
                return

    questions: Iterable[str] = [args.question] if args.question is not None else typed() if interactive else sys.stdin
    turns: list[Turn] = []
    failed = 0
    if interactive:
        print(f"post {post.post_id}: one question per line; an empty line or Ctrl-D ends", file=sys.stderr)
    try:
        for question in questions:
            if not question.strip():
                if interactive:
                    break
                continue
            try:
                turn = ask(provider, post, turns, question, max_new_tokens=args.max_new_tokens)
            except ReviewError as exc:  # a question refused (too long…): say so, go on
                failed += 1
                print(f"error: {exc}", file=sys.stderr)
                continue
            turns.append(turn)
            if turn.error:
                failed += 1
                print(f"error: the model gave no answer: {turn.error}", file=sys.stderr)
            else:
                print(turn.answer if not interactive else f"{turn.answer}\n", flush=True)
    finally:  # the turns answered so far are kept, also on Ctrl-C
        if args.save:
            args.save.write_text(conversation_json(post, turns, provider), encoding="utf-8")
    return EXIT_REJECTED if failed else 0


def _read_password(args: argparse.Namespace) -> str:
    """From one line of stdin with --password-stdin; else typed twice at a terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to type a password: pipe it in with --password-stdin")
    import getpass

    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from review import auth

    desk = open_desk()
    operator = auth.OPERATOR
    if args.user_command == "add":
        password = None if args.sso_only else _read_password(args)
        actor = auth.add_user_as_operator(desk.sessions, args.name, password, args.role)
        print(f"added {actor.username} ({actor.role})")
    elif args.user_command == "list":
        with desk.sessions() as session:
            users = auth.list_users(session, by=operator)
        for u in users:
            state = "active" if u["active"] else "deactivated"
            login = f"{u['last_login_at']:%Y-%m-%d %H:%M} UTC" if u["last_login_at"] else "never"
            locked = f"\tlocked {u['locked']} until {u['locked_until']:%Y-%m-%d %H:%M} UTC" if u["locked"] else ""
            print(f"{u['username']}\t{u['role']}\t{state}\tlast login {login}{locked}")
        if not users:
            print("no users yet: python -m review user add NAME --role admin", file=sys.stderr)
    elif args.user_command == "passwd":
        auth.set_password(desk.sessions, args.name, _read_password(args), by=operator)
        print(f"password of {auth.normalise_username(args.name)} changed (and the account unlocked)")
    elif args.user_command == "role":
        auth.set_role(desk.sessions, args.name, args.role, by=operator)
        print(f"{auth.normalise_username(args.name)} is now {args.role}")
    elif args.user_command == "unlock":
        locked = auth.unlock(desk.sessions, args.name, by=operator)
        was = f"{locked} lock{'s' if locked != 1 else ''} cleared" if locked else "it was not locked"
        print(f"{auth.normalise_username(args.name)} unlocked ({was}; its failed sign-ins forgotten)")
    else:
        active = args.user_command == "activate"
        released = auth.set_active(desk.sessions, args.name, active, by=operator)
        print(f"{auth.normalise_username(args.name)} {'activated' if active else 'deactivated'}")
        if released:
            print(f"released {released} post{'s' if released != 1 else ''} it was reviewing back to the queue")
    return 0


def _day(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day: {value!r} (use YYYY-MM-DD)") from None


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"not a share between 0 and 1: {value!r}")
    return share


def _through(day: datetime | None) -> datetime | None:
    """--until DAY means through the end of DAY: the start of the next one (UTC)."""
    return day + timedelta(days=1) if day is not None else None


def metric_filter(args: argparse.Namespace) -> MetricFilter:
    """--since DAY (from its start) and --until DAY (through its end), UTC; the rest as given."""
    return MetricFilter(
        since=args.since,
        until=_through(args.until),
        source=args.source,
        category=args.category,
        model_id=args.model,
        prompt_version=args.prompt_version,
    )


def cmd_report(args: argparse.Namespace) -> int:
    from review import report
    from review.auth import OPERATOR

    if args.format == "csv" and args.out is None and args.table is None:
        raise ReviewError("--format csv writes one table: name it with --table, or give --out DIR for all of them")
    desk = open_desk()
    flt = metric_filter(args)
    sections = tuple(args.section or report.SECTIONS)
    with desk.sessions() as session:
        tables = report.build(session, OPERATOR, flt, sections=sections, period=args.period, target=args.target)
    if args.table is not None:
        if args.table not in tables:
            raise ReviewError(f"no table {args.table!r} in this report; there are: {', '.join(tables)}")
        tables = {args.table: tables[args.table]}
    if args.out is not None:  # json: one report.json; text and csv: a CSV file per table
        if args.format == "json":
            files = {"report.json": report.to_json(tables, flt)}
        else:
            files = {f"{name}.csv": report.to_csv(df) for name, df in tables.items()}
        written = report.write_files(args.out, files, force=args.force)
        print(f"wrote {len(written)} file(s) to {args.out}")
    elif args.format == "json":
        print(report.to_json(tables, flt))
    elif args.format == "csv":
        sys.stdout.write(report.to_csv(next(iter(tables.values()))))
    else:
        for name, df in tables.items():
            print(f"== {name}")
            print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}") if len(df) else "(no rows)")
            print()
    return 0


def _demo_history(desk: Desk) -> int:
    from review.auth import OPERATOR, user_count
    from review.demo import simulate_history

    with desk.sessions() as session:
        if not user_count(session):  # the demo moderators would take the first admin's place
            raise ReviewError("create the first admin first: python -m review user add NAME --role admin")
    done = simulate_history(desk.sessions, OPERATOR, raters=min(desk.settings.qa_raters, 3))
    print(f"simulated {done.decisions} decisions, {done.second_reviews} second reviews and {done.escalations} "
          f"escalations over ten days; {done.left_waiting} demo posts left in the queue")  # fmt: skip
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from review.auth import OPERATOR
    from review.export import ExportOptions, export

    desk = open_desk()
    opts = ExportOptions(format=args.format, include="all" if args.all else "disagreements", since=args.since,
                         until=_through(args.until), categories=tuple(args.category or ()), source=args.source,
                         cap_per_category=args.cap_per_category, val_fraction=args.val_fraction,
                         strip_pii=args.strip_pii, seed=args.seed, allow_ungrouped=args.allow_ungrouped,
                         model=args.model)  # fmt: skip
    bars: dict[str, tqdm] = {}

    def progress(stage: str, total: int) -> Callable[[int], None]:
        bar = bars[stage] = tqdm(total=total, desc=stage, unit="example", disable=args.quiet)

        def update(done: int) -> None:
            bar.update(done - bar.n)

        return update

    try:
        result = export(desk.sessions, OPERATOR, desk.settings, opts, args.out, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    m = result.manifest
    train, val = sum(m["counts"]["train"].values()), sum(m["counts"]["val"].values())
    print(f"export {result.export_id}: {m['examples']} examples ({train} train, {val} validation) in {result.out}")
    for reason, n in m["dropped"].items():
        print(f"  dropped {n}: {reason}")
    tokens = m["tokens"]
    longest = "longest example" if tokens["exact"] else "longest example at most (an upper bound)"
    print(f"  {longest}: {m['max_tokens']} tokens; cutoff_len {m['cutoff_len']} (see TRAINING.md)")
    if not tokens["exact"]:
        print(f"  note: the token counts are an upper bound: {tokens['note'] or tokens['method']}", file=sys.stderr)
    if m["ungrouped"]:
        print(f"  note: {m['ungrouped']} examples have images without a near-duplicate cluster; their near duplicates "
              "may sit on both sides of the split (python -m review signals groups them)", file=sys.stderr)  # fmt: skip
    if m["prompt_not_reproduced"]:
        print(f"  note: {m['prompt_not_reproduced']} examples were scored with a prompt that is no longer the current "
              "one (or by the baseline rules); they carry today's prompt", file=sys.stderr)  # fmt: skip
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from review.auth import OPERATOR
    from review.finetune import TrainParams, finetune

    desk = open_desk()
    params = TrainParams(epochs=args.epochs, lr=args.lr, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                         batch_size=args.batch_size, max_steps=args.max_steps, seed=args.seed)  # fmt: skip
    bar = tqdm(total=None, unit="step", disable=args.quiet)

    def progress(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    try:
        result = finetune(args.export_dir, args.base, args.out, params, sessions=desk.sessions, actor=OPERATOR,
                          progress=progress)  # fmt: skip
    finally:
        bar.close()
    print(f"adapter saved to {result.adapter} after {result.steps} steps (final loss {result.losses[-1]:.4f}); "
          f"{result.trainable:,} trainable parameters in {len(result.target_modules)} language-model modules"
          + (f"; finetune run {result.run_id}" if result.run_id else ""))  # fmt: skip
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from review.evaluate import evaluate_export

    desk = open_desk()

    def make(adapter: str | None) -> Provider:
        return load_provider(desk.settings, name=args.provider, model=args.model, base_url=args.base_url,
                             adapter=adapter)  # fmt: skip

    bars: dict[str, tqdm] = {}

    def progress(label: str, done: int, total: int) -> None:
        bar = bars.setdefault(label, tqdm(total=total, desc=label, unit="example", disable=args.quiet))
        bar.update(done - bar.n)

    results = evaluate_export(args.export_dir, args.model, adapter=args.adapter, split=args.split, make_provider=make,
                              sessions=desk.sessions, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                              progress=progress)  # fmt: skip
    for bar in bars.values():
        bar.close()
    rows = [r.summary() for r in results]
    names = ["examples", "precision", "recall", "f1", "accuracy", "roc_auc", "category_macro_f1", "category_accuracy",
             "unparsed_answers"]  # fmt: skip
    heads = ["base"] + (["with adapter"] if args.adapter else [])
    print(f"{'':22}" + "".join(f"{h:>16}" for h in heads))
    for name in names:
        cells = [r[name] for r in rows]
        shown = [("–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)) for v in cells]
        print(f"{name:22}" + "".join(f"{c:>16}" for c in shown))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from review import audit
    from review.auth import OPERATOR

    desk = open_desk()
    flt = audit.AuditFilter(since=args.since, until=_through(args.until), action=audit.check_action(args.action),
                            actor=args.actor, limit=args.limit)  # fmt: skip
    if args.audit_command == "list":
        with desk.sessions() as session:
            rows = audit.events(session, flt, by=OPERATOR)
        if rows.empty:
            print("no audit events match", file=sys.stderr)
            return 0
        print("\n".join(audit.text_table(rows)))
        return 0
    with desk.sessions() as session:
        n = audit.export_events(session, flt, args.out, by=OPERATOR, fmt=args.format)
    filters = {k: v for k, v in {"since": args.since, "until": args.until, "action": flt.action,
                                 "actor": args.actor, "limit": args.limit}.items() if v is not None}  # fmt: skip
    audit.log(desk.sessions, OPERATOR, audit.Action.EXPORT, str(args.out), what="audit log", format=args.format,
              rows=n, filters={k: str(v) for k, v in filters.items()})  # fmt: skip
    print(f"wrote {n} audit events to {args.out}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from review import backup

    def progress(stage: str, done: int) -> None:
        if not args.quiet and stage == "media" and done:
            print(f"\r{stage}: {done} files", end="", file=sys.stderr, flush=True)

    if args.backup_command == "create":
        made = backup.create(open_desk(check_schema=False), args.out, progress=progress)  # also before an upgrade
        m = made.manifest
        if not args.quiet:
            print(file=sys.stderr)
        counts = backup.describe(m["counts"])
        print(f"backup of {m['source']} (schema {m['schema_revision']}) in {made.folder}: {counts}; "
              f"{m['media']['files']} media files ({m['media']['bytes']} bytes)")  # fmt: skip
        if made.missing:
            shown = ", ".join(m["media"]["missing_shown"])
            print(f"warning: {made.missing} files named by media rows were not in MEDIA_DIR: {shown}", file=sys.stderr)
            return EXIT_REJECTED
        return 0
    if args.backup_command == "verify":
        m = backup.verify(args.source)
        print(f"{args.source}: a complete {m['backend']} backup of {m['created_at']} (schema {m['schema_revision']})")
        return 0
    settings = load_settings()
    done = backup.restore(settings, args.source, force=args.force, progress=progress)
    if not args.quiet:
        print(file=sys.stderr)
    counts = backup.describe(done.manifest["counts"])
    upgraded = f", upgraded from schema {done.upgraded_from}" if done.upgraded_from else ""
    print(f"restored {args.source} into {safe_url(settings.database_url)} and {settings.media_dir}: {counts}; "
          f"{done.media_files} media files copied (schema {done.revision}{upgraded})")  # fmt: skip
    if done.missing:
        print(f"warning: {done.missing} files named by media rows are not in MEDIA_DIR: "
              f"{', '.join(done.missing_shown)}", file=sys.stderr)  # fmt: skip
        return EXIT_REJECTED
    return 0


def _audit_and_backup_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def positive(value: str) -> int:
        if not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
        return int(value)

    aud = sub.add_parser("audit", help="the audit log (admins): list or export")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    listing = aud_sub.add_parser("list", help="the latest events as a table, newest first")
    export = aud_sub.add_parser(
        "export", help="every matching event, oldest first, to a new CSV or JSON-lines file (streamed)"
    )
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="a new file (never overwritten)")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    for p in (listing, export):
        p.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="from the start of this UTC day")
        p.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="through the end of this UTC day")
        p.add_argument("--action", help="one action (user.role) or a family (user.)")
        p.add_argument("--actor", metavar="NAME", help="who acted, as stored ('(command line)' for the CLI)")
    listing.add_argument("--limit", type=positive, default=50, metavar="N", help="at most N events (default 50)")
    export.add_argument("--limit", type=positive, metavar="N", help="the newest N events, as list (default: all)")
    aud.set_defaults(func=cmd_audit)

    bak = sub.add_parser("backup", help="back up the database and the media store, verify a backup, restore one")
    bak_sub = bak.add_subparsers(dest="backup_command", required=True)
    create = bak_sub.add_parser(
        "create",
        help="an online, consistent copy of the database, then the media files, and a manifest",
        description="SQLite through its online backup API, Postgres through pg_dump --format=custom; safe while the "
        "app and workers write.",
    )
    create.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty folder")
    verify = bak_sub.add_parser("verify", help="check a backup folder: manifest, checksums, media files")
    verify.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR")
    restore = bak_sub.add_parser(
        "restore",
        help="restore a backup into DATABASE_URL (an empty database) and MEDIA_DIR",
        description="Refuses a database that holds any table (a restore never overwrites a desk) and a backup made "
        "by a newer version; an older backup is upgraded to this version's schema after the restore.",
    )
    restore.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR")
    restore.add_argument(
        "--force", action="store_true", help="restore into a MEDIA_DIR that already holds files (they are kept)"
    )
    for p in (create, verify, restore):
        p.add_argument("--quiet", action="store_true", help="no progress")
    bak.set_defaults(func=cmd_backup)


def _print_erasure(result: Erasure, label: str) -> None:
    """The one-line summary, then what needs a person: export folders, failed file deletions."""
    print(f"{label}{' (dry run, nothing changed)' if result.dry_run else ''}: {result.summary()}")
    for post_id, when in sorted(result.already.items()):
        since = f" on {when:%Y-%m-%d %H:%M} UTC" if when else ""
        print(f"post {post_id}: already erased{since}, nothing left to erase", file=sys.stderr)
    for missing in result.not_found:
        print(f"not found: {missing}", file=sys.stderr)
    for folder in result.export_folders:
        print(f"export folder still holds erased posts (delete it or export again): {folder}", file=sys.stderr)
    for folder in result.unchecked_exports:
        print(f"export folder could not be checked (no readable manifest.json): {folder}", file=sys.stderr)
    for failure in result.file_errors:
        print(f"could not delete {failure} (python -m review media gc removes it later)", file=sys.stderr)


def cmd_purge(args: argparse.Namespace) -> int:
    from review import purge
    from review.auth import OPERATOR

    reason = purge.check_reason(args.reason)  # before anything else: no reason, nothing done
    desk = open_desk()
    ids = list(args.post or [])
    if args.posts_file is not None:
        ids += purge.read_ids_file(args.posts_file)
    external = [purge.parse_external(v) for v in args.external or []]
    if args.source and args.author is None:
        raise ConfigError("--source narrows --author: give --author NAME too")
    if not ids and not external and args.author is None:
        raise ConfigError("name the posts: --post ID, --posts-file FILE, --external SOURCE:ID or --author NAME")
    with desk.sessions() as session:
        found, missing = purge.resolve_posts(session, post_ids=ids, external=external, author=args.author,
                                             source=args.source)  # fmt: skip
    if args.author is not None and not found and not missing:
        where = f" in {args.source}" if args.source else ""
        print(f"purge: no post by {args.author!r}{where}: nothing to erase (a purge erases the author, so posts "
              "purged before no longer match)")  # fmt: skip
        return 0
    result = purge.purge(desk.sessions, OPERATOR, desk.settings, found, reason=reason, dry_run=args.dry_run,
                         not_found=missing, author=args.author)  # fmt: skip
    _print_erasure(result, "purge")
    return EXIT_REJECTED if result.not_found or result.file_errors else 0


def cmd_retention(args: argparse.Namespace) -> int:
    from review import purge
    from review.auth import OPERATOR

    desk = open_desk()
    days = purge.retention_days(desk.settings)
    if not any(days.values()):
        print("retention: nothing to do, every kind is kept for ever (RETAIN_MEDIA_DAYS, RETAIN_TEXT_DAYS, "
              "RETAIN_RAW_OUTPUT_DAYS)")  # fmt: skip
        return 0
    result = purge.apply_retention(desk.sessions, OPERATOR, desk.settings, dry_run=args.dry_run)
    kept = ", ".join(f"{kind} {d} day{'' if d == 1 else 's'}" if d else f"{kind} for ever" for kind, d in days.items())
    _print_erasure(result, f"retention ({kept})")
    return EXIT_REJECTED if result.file_errors else 0


def _erasure_parsers(sub) -> None:  # type: ignore[no-untyped-def]
    pg = sub.add_parser(
        "purge",
        help="erase posts' content (text, images, signals, verdict texts, notes) and keep a tombstone",
        description="Erase the content of posts: text, author, metadata, images and thumbnails no other post shows, "
        "OCR and other signals, the verdicts' texts and raw output, review notes, and image copies in known export "
        "folders (folders whose data files still hold the posts are listed). The post row stays as a tombstone, "
        "with an audit event: who, when, why, what. Decisions and metrics stay countable.",
    )
    pg.add_argument("--post", type=int, action="append", metavar="ID", help="a post id (repeatable)")
    pg.add_argument(
        "--posts-file", type=Path, metavar="FILE", help="post ids: one a line or separated by commas, # comments"
    )
    pg.add_argument("--external", action="append", metavar="SOURCE:ID", help="a post by source and external id")
    pg.add_argument("--author", metavar="NAME", help="every post of this author (exact match)")
    pg.add_argument("--source", help="with --author: only posts of this source")
    pg.add_argument("--reason", required=True, help="why (a request's reference, a legal ground): required")
    pg.add_argument("--dry-run", action="store_true", help="show what would be erased, change nothing")
    pg.set_defaults(func=cmd_purge)

    ret = sub.add_parser(
        "retention",
        help="erase what the retention settings no longer keep (for cron: a one-line summary, exit 0 when all went)",
        description="Apply RETAIN_MEDIA_DAYS, RETAIN_TEXT_DAYS and RETAIN_RAW_OUTPUT_DAYS (days after a post's "
        "decision; 0: for ever) to decided posts, by the purge's mechanism, with one audit event per run. Prints "
        "one summary line; export folders that still hold erased posts and files that could not be deleted are "
        "listed on stderr, and a failed file deletion makes the exit status 1 (python -m review media gc removes "
        "such files later).",
    )
    ret.add_argument("--dry-run", action="store_true", help="show what would be erased, change nothing")
    ret.set_defaults(func=cmd_retention)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        choices=["transformers", "openai", "baseline"],
        help="default: PROVIDER setting (transformers); baseline: rules over the signals, no model",
    )
    parser.add_argument("--model", help="hub id or local folder (default: MODEL setting)")
    parser.add_argument("--base-url", help="OpenAI-compatible server URL, for --provider openai")
    parser.add_argument("--adapter", help="a PEFT LoRA adapter folder to apply to the model")
    parser.add_argument(
        "--revision",
        help="hub revision (branch, tag or commit) to load; with --provider openai, the revision the server "
        "was started with, recorded on every verdict",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m review", description="Review desk command line")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema: upgrade, downgrade, current")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="bring the schema to the latest revision (or REVISION)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="step the schema back to REVISION (base = empty)")
    down.add_argument("revision")
    db_sub.add_parser("current", help="show the schema revision; exit 1 when out of date")
    db_sub.add_parser(
        "rebuild-labels",
        help="rebuild the metrics' post_label table from the review events (after loading rows by hand)",
    )
    db.set_defaults(func=cmd_db)

    ingest = sub.add_parser(
        "ingest",
        help="load posts from JSONL/CSV files or folders of images",
        description="Load posts. Each record: external_id, source, text, author, created_at, images, metadata.",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help=".jsonl, .csv, .tsv file or a folder of images")
    ingest.add_argument("--source", help="source for records that name none (default: local)")
    ingest.add_argument(
        "--encoding",
        help="text encoding of the inputs, e.g. gb18030, big5, shift_jis (default: UTF-8, or UTF-16 with a BOM; "
        "other text is refused, never guessed)",
    )
    ingest.add_argument(
        "--allow-absolute-paths",
        action="store_true",
        help="accept absolute image paths inside the inputs (relative paths never leave the input's folder)",
    )
    ingest.add_argument("--workers", type=int, default=2, help="threads decoding images (default 2, at most 16)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(func=cmd_ingest)

    media = sub.add_parser("media", help="the media store: gc (files left by crashes)")
    media_sub = media.add_subparsers(dest="media_command", required=True)
    gc = media_sub.add_parser(
        "gc",
        help="list (or --delete) temporary files and files no media row refers to",
        description="Temporary .tmp-* files and store files that no media row refers to, older than --min-age "
        "(so that nothing a running ingest writes is touched). A dry run unless --delete; a deletion is audited.",
    )
    gc.add_argument("--delete", action="store_true", help="remove them (default: only list them with their sizes)")
    gc.add_argument("--min-age", type=float, default=60, metavar="MINUTES", help="only files older than this (60)")
    media.set_defaults(func=cmd_media)

    score = sub.add_parser("score", help="give every unscored post a model verdict")
    _model_arguments(score)
    score.add_argument("--batch-size", type=int, default=4, help="posts per model call (default 4)")
    score.add_argument("--limit", type=int, help="score at most this many posts")
    score.add_argument("--max-new-tokens", type=int, default=768, help="answer length limit (default 768)")
    score.add_argument("--near-duplicates", action="store_true", help="reuse verdicts of near-duplicate images")
    score.add_argument(
        "--ocr-hints", action="store_true", help="give the model the OCR text of the images (a new prompt version)"
    )
    score.add_argument("--skip-signals", action="store_true", help="do not compute missing signals first")
    score.add_argument(
        "--lease-seconds", type=int, default=600, help="how long a claimed post stays with this worker (default 600)"
    )
    score.add_argument(
        "--retry-seconds",
        type=float,
        default=120.0,
        help="how long in all to wait for an unreachable database before giving up (default 120)",
    )
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(func=cmd_score)

    ask = sub.add_parser(
        "ask",
        help="ask the model about a post",
        description="Ask the model questions about one post. Without QUESTION, each line of standard input is "
        "a question of one conversation (the images are encoded once for all of them).",
    )
    ask.add_argument("post_id", type=int, metavar="POST_ID")
    ask.add_argument("question", nargs="?", metavar="QUESTION")
    _model_arguments(ask)
    ask.add_argument("--max-new-tokens", type=int, default=512, help="answer length limit (default 512)")
    ask.add_argument("--save", type=Path, metavar="FILE", help="write the conversation as JSON to FILE")
    ask.set_defaults(func=cmd_ask)

    user = sub.add_parser("user", help="accounts: add, list, passwd, role, activate, deactivate, unlock")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    roles = ["moderator", "lead", "admin"]
    add = user_sub.add_parser(
        "add",
        help="add an account (the first one must be an admin)",
        description="Add an account. The password is typed twice at a terminal, or read from one line of "
        "standard input with --password-stdin.",
    )
    add.add_argument("name")
    add.add_argument("--role", choices=roles, required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--sso-only", action="store_true", help="no password: the user signs in with single sign-on")
    user_sub.add_parser("list", help="list the accounts")
    passwd = user_sub.add_parser("passwd", help="set a new password (also unlocks the account)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    role = user_sub.add_parser("role", help="change an account's role")
    role.add_argument("name")
    role.add_argument("role", choices=roles)
    for verb in ("activate", "deactivate"):
        user_sub.add_parser(verb, help=f"{verb} an account").add_argument("name")
    user_sub.add_parser(
        "unlock", help="clear an account's sign-in throttling (every client), after too many failed sign-ins"
    ).add_argument("name")
    user.set_defaults(func=cmd_user)

    signals = sub.add_parser("signals", help="compute missing image signals: OCR, NSFW score, near-duplicate clusters")
    signals.add_argument("--limit", type=int, help="at most this many images")
    signals.add_argument("--quiet", action="store_true", help="no progress bar")
    signals.set_defaults(func=cmd_signals)

    demo = sub.add_parser(
        "demo",
        help="load the synthetic demo posts into an empty database, then compute signals and score them",
        description="Load the demo posts, compute their signals and score them with the configured model; when "
        "that model cannot be loaded (no weights, no network), the baseline provider scores them instead.",
    )
    demo.add_argument("--force", action="store_true", help="add the demo posts even if the database has posts")
    demo.add_argument("--no-score", action="store_true", help="only load the posts")
    demo.add_argument(
        "--history",
        action="store_true",
        help="instead: simulate ten days of moderation on the loaded demo posts, for the lead pages "
        "(after the first admin exists)",
    )
    _model_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    report = sub.add_parser(
        "report",
        help="the lead pages' numbers: accuracy, agreement and operations tables",
        description="Model-vs-human accuracy, moderator agreement and operations, from the decided posts. "
        "Dates are UTC days: --since from the start of the day, --until through its end.",
    )
    report.add_argument("--format", choices=["text", "json", "csv"], default="text")
    report.add_argument("--out", type=Path, metavar="DIR", help="write the tables to DIR (csv: one file per table)")
    report.add_argument(
        "--force", action="store_true", help="with --out: replace files of the same names that DIR already holds"
    )
    report.add_argument("--table", help="only this table (needed for --format csv without --out)")
    report.add_argument(
        "--section",
        action="append",
        choices=["accuracy", "agreement", "operations"],
        help="only these sections (repeatable; default: all)",
    )
    report.add_argument("--since", type=_day, metavar="YYYY-MM-DD")
    report.add_argument("--until", type=_day, metavar="YYYY-MM-DD")
    report.add_argument("--source")
    report.add_argument("--category", help="the human label's category")
    report.add_argument("--model", help="the model id of the verdict on screen")
    report.add_argument("--prompt-version")
    report.add_argument("--period", choices=["day", "week"], default="week", help="trend buckets (default week)")
    report.add_argument("--target", type=_share, default=0.95, help="precision target for the threshold advice")
    report.set_defaults(func=cmd_report)

    exp = sub.add_parser(
        "export",
        help="the moderators' corrections as LoRA training data (LLaMA-Factory, ms-swift, Qwen-VL, parquet)",
        description="Export settled posts as training examples: the prompt the model saw, with the images, and the "
        "verdict JSON carrying the moderator's label. Disagreements only unless --all. Dates are UTC days.",
    )
    exp.add_argument("--format", choices=["llamafactory", "swift", "qwen", "parquet"], required=True)
    exp.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty folder")
    exp.add_argument("--all", action="store_true", help="every decided post, not only the disagreements")
    exp.add_argument("--since", type=_day, metavar="YYYY-MM-DD")
    exp.add_argument("--until", type=_day, metavar="YYYY-MM-DD")
    exp.add_argument("--category", action="append", help="only this human category (repeatable)")
    exp.add_argument("--source")
    exp.add_argument("--cap-per-category", type=int, metavar="N", help="at most N examples per category")
    exp.add_argument("--val-fraction", type=float, default=0.1, help="share for validation (default 0.1)")
    exp.add_argument("--strip-pii", action="store_true", help="replace handles, phones, e-mails, ids, links in text")
    exp.add_argument("--seed", type=int, default=0, help="for the split and the per-category cap")
    exp.add_argument(
        "--allow-ungrouped",
        action="store_true",
        help="export posts whose images have no near-duplicate cluster yet (python -m review signals makes them); "
        "their near duplicates may then land on both sides of the split",
    )
    exp.add_argument(
        "--model",
        "--tokenizer",
        dest="model",
        metavar="MODEL",
        help="hub id or folder whose processor measures the examples in tokens (default: MODEL setting); when it "
        "cannot be loaded, the lengths are an upper bound",
    )
    exp.add_argument("--quiet", action="store_true", help="no progress bars")
    exp.set_defaults(func=cmd_export)

    ft = sub.add_parser(
        "finetune",
        help="train a LoRA adapter (PEFT) on an export's train split",
        description="LoRA on the language model's attention and MLP projections (the vision tower stays frozen), "
        "loss on the assistant's answer only. Reads llamafactory, swift or parquet exports.",
    )
    ft.add_argument("export_dir", type=Path, metavar="EXPORT_DIR")
    ft.add_argument("--base", required=True, help="hub id or local folder of the base model")
    ft.add_argument("--out", type=Path, required=True, metavar="ADAPTER_DIR", help="a new or empty folder")
    ft.add_argument("--epochs", type=int, default=1)
    ft.add_argument("--lr", type=float, default=2e-4)
    ft.add_argument("--lora-r", type=int, default=16)
    ft.add_argument("--lora-alpha", type=int, default=32)
    ft.add_argument("--batch-size", type=int, default=1, help="examples per optimizer step (default 1)")
    ft.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--quiet", action="store_true", help="no progress bar")
    ft.set_defaults(func=cmd_finetune)

    ev = sub.add_parser(
        "evaluate",
        help="score a model (and with --adapter, base and adapter side by side) on an export's held-out split",
        description="Ask the model for a verdict on each example of the split, with the example's prompt and images, "
        "and compare with the moderators' labels using the accuracy page's metrics.",
    )
    ev.add_argument("export_dir", type=Path, metavar="EXPORT_DIR")
    ev.add_argument("--model", required=True, help="hub id or local folder (with --provider openai: the served name)")
    ev.add_argument("--adapter", help="a LoRA adapter folder: evaluated after the base model, side by side")
    ev.add_argument("--split", default="val", choices=["val", "train"])
    ev.add_argument("--provider", choices=["transformers", "openai"], default="transformers")
    ev.add_argument("--base-url", help="OpenAI-compatible server URL, for --provider openai")
    ev.add_argument("--batch-size", type=int, default=4)
    ev.add_argument("--max-new-tokens", type=int, default=768)
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_evaluate)
    _erasure_parsers(sub)
    _audit_and_backup_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        reason = outage_reason(exc)
        if reason is not None:  # the database went away: one line, not the chain of tracebacks
            print(f"error: {outage_message(reason)}", file=sys.stderr)
            return EXIT_ERROR
        # a bug: keep the traceback for the report, with its own exit status
        traceback.print_exc()
        print("error: internal error (the traceback above is worth a bug report)", file=sys.stderr)
        return EXIT_INTERNAL
