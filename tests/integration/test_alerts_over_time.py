"""Alerts over time with several configurations on one catalog (serve's and a compliance job's), channels that stay
down for most of a day, a back-dated first audit, and a rule whose channels change while an episode is open: each
condition is one episode, each of its notices is sent once to the channels it is owed to, none is given up early."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditor.catalog.repository import open_catalog
from auditor.config import Settings, load_settings
from auditor.runtime import Runtime
from tests.conftest import Tree, t
from tests.integration.test_alerts import KEY, Receiver, Service
from tests.integration.test_ledger import run

MISSED_03 = "missed|web|ds|2026-11-27T03:00:00Z"


@pytest.fixture
def hooks() -> Iterator[dict[str, Receiver]]:
    made = {name: Receiver() for name in ("pager", "ops", "old", "new")}
    yield made
    for receiver in made.values():
        receiver.server.shutdown()


def settings(tmp_path: Path, tree: Tree, name: str, hooks: dict[str, Receiver], rules: dict[str, tuple[str, list[str]]], *, give_up_after: str = "24h") -> Settings:
    """A configuration `name` of the shared catalog: one export, the channels `hooks`, the alert rules (name: when, channels)."""
    channels = "".join(
        f'[[channels]]\nname = "{c}"\nkind = "webhook"\nurl = "{r.url}"\nsecret = "{KEY}"\ngive_up_after = "{give_up_after}"\n\n' for c, r in hooks.items()
    )
    alerts = "".join(f'[[alerts]]\nname = "{n}"\nwhen = "{when}"\nchannels = {json.dumps(chs)}\n\n' for n, (when, chs) in rules.items())
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[validation]
isolate = false

{channels}{alerts}[[destinations]]
name = "d"
url = "{tree.url}"
audit_every = "15m"

[[exports]]
name = "web"
destination = "d"
datasets = ["ds"]
format = "parquet"
manifest = true
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }}
"""
    )
    return load_settings(config, {})


def test_a_configuration_without_a_rule_leaves_its_episodes_to_the_one_that_has_it(tree: Tree, tmp_path: Path, hooks: dict[str, Receiver]) -> None:
    """serve pages on missing windows (rule `missed`); a compliance job on the same catalog has only rule `corrupt`.
    Each of the job's audits closed serve's open episodes as "no longer monitored", and serve's next audit paged again
    for the same missing window: once per job audit. One episode, one page now; nobody's for three days: closed."""
    tree.export("ds", t("2026-11-27T00:00"))  # 03:00 never lands
    serve = Service(settings(tmp_path, tree, "serve", {"pager": hooks["pager"]}, {"missed": ("missing", ["pager"])}), t("2026-11-27T05:00"))
    job = Service(settings(tmp_path, tree, "job", {"ops": hooks["ops"]}, {"corrupt": ("invalid", ["ops"])}), t("2026-11-27T05:00"))
    when = t("2026-11-27T05:00")
    for _ in range(4):
        serve.at(when)
        job.worker.audit_now(when + timedelta(minutes=10))
        when += timedelta(minutes=20)
    serve.at(when)
    pages = [r for r in hooks["pager"].received if r["kind"] == "alert" and r["scheduled"] == "2026-11-27T03:00:00Z"]
    assert len(pages) == 1 and hooks["ops"].received == [] and MISSED_03 in serve.runtime.catalog.open_episodes()
    job.worker.audit_now(when + timedelta(days=3, minutes=1))  # no audit with rule `missed` for three days: nobody watches it
    assert MISSED_03 not in serve.runtime.catalog.open_episodes()
    serve.close()
    job.close()


def test_a_configuration_does_not_claim_the_notices_of_channels_it_does_not_name(tree: Tree, tmp_path: Path, hooks: dict[str, Receiver]) -> None:
    """The job's deliveries claimed serve's page (channel `pager`, which the job does not name) and gave it up for good:
    "the channel is no longer configured"; the pager, back a minute later, never got it. Left to serve now; a notice no
    process names the channel of is given up after a day."""
    tree.export("ds", t("2026-11-27T00:00"))
    hooks["pager"].down = True
    serve = Service(settings(tmp_path, tree, "serve", {"pager": hooks["pager"]}, {"missed": ("missing", ["pager"])}), t("2026-11-27T05:00"))
    job = Runtime(settings(tmp_path, tree, "job", {"ops": hooks["ops"]}, {"corrupt": ("invalid", ["ops"])}))
    serve.at(t("2026-11-27T05:00"))  # the page fails once (pager down)
    for minute in (1, 2, 3):
        job.deliver(t("2026-11-27T05:00") + timedelta(minutes=minute))
    assert [n.state for n in job.catalog.notices()] == ["pending"] * len(job.catalog.notices()) and job.catalog.notices()
    hooks["pager"].down = False
    serve.at(t("2026-11-27T05:20"))
    assert [r["scheduled"] for r in hooks["pager"].received if r["kind"] == "alert"].count("2026-11-27T03:00:00Z") == 1
    serve.close()
    # a notice to a channel no configuration delivering from this catalog names: given up after a day, saying so
    hooks["pager"].down = True
    tree.export("ds", t("2026-11-27T06:00"))
    lone = Service(settings(tmp_path, tree, "serve", {"pager": hooks["pager"]}, {"missed": ("missing", ["pager"])}), t("2026-11-27T12:00"))
    lone.at(t("2026-11-27T12:00"))  # 09:00 missing: a page, which fails
    lone.close()
    job.deliver(t("2026-11-27T13:00"))
    assert not job.catalog.notices(state="failed")
    job.deliver(t("2026-11-28T12:30"))
    [failed] = job.catalog.notices(state="failed")
    assert failed.channel == "pager" and "has tried the channel for 1 day" in (failed.last_error or "")
    job.close()


def test_a_configuration_leaves_alone_a_notice_another_still_retries(tree: Tree, tmp_path: Path, hooks: dict[str, Receiver]) -> None:
    """serve retries its page (give_up_after 3 days) while the pager is down; a job that does not name the pager claimed
    it once it was a day old and gave it up for good, saying nobody named the channel."""
    tree.export("ds", t("2026-11-27T00:00"))
    hooks["pager"].down = True
    serve = Service(settings(tmp_path, tree, "serve", {"pager": hooks["pager"]}, {"missed": ("missing", ["pager"])}, give_up_after="3d"), t("2026-11-27T05:00"))
    job = Runtime(settings(tmp_path, tree, "job", {"ops": hooks["ops"]}, {"corrupt": ("invalid", ["ops"])}))
    when = t("2026-11-27T05:00")
    while when < t("2026-11-28T06:00"):  # serve's loop, every 10 minutes for 25 hours
        serve.at(when)
        when += timedelta(minutes=10)
    job.deliver(when + timedelta(hours=1, minutes=30))  # the page is due again (serve's next try is at most an hour after its last)
    page = next(n for n in job.catalog.notices() if n.key == MISSED_03)
    assert page.state == "pending" and page.attempts > 10, page
    hooks["pager"].down = False
    serve.at(when + timedelta(hours=2))
    assert [(r["kind"], r["scheduled"]) for r in hooks["pager"].received].count(("alert", "2026-11-27T03:00:00Z")) == 1
    serve.close()
    job.close()


def test_a_notice_is_tried_until_it_is_give_up_after_old(tree: Tree, tmp_path: Path, hooks: dict[str, Receiver]) -> None:
    """With give_up_after 2h and the channel back at 1h50m, the notice was given up at 1h11m (its next backoff would have
    passed the limit) and never sent. It is tried at the limit now, and sent."""
    tree.export("ds", t("2026-11-27T00:00"))
    hooks["pager"].down = True
    serve = Service(settings(tmp_path, tree, "serve", {"pager": hooks["pager"]}, {"missed": ("missing", ["pager"])}, give_up_after="2h"), t("2026-11-27T05:00"))
    for minute in range(0, 110, 1):
        serve.at(t("2026-11-27T05:00") + timedelta(minutes=minute))
    assert not serve.runtime.catalog.notices(state="failed")
    hooks["pager"].down = False
    for minute in range(110, 125, 1):
        serve.at(t("2026-11-27T05:00") + timedelta(minutes=minute))
    assert [(r["kind"], r["scheduled"]) for r in hooks["pager"].received].count(("alert", "2026-11-27T03:00:00Z")) == 1
    notice = next(n for n in serve.runtime.catalog.notices() if n.key == MISSED_03)
    assert notice.state == "delivered" and notice.delivered_at is not None and notice.delivered_at - notice.created_at <= timedelta(hours=2)
    serve.close()


def test_the_notices_of_a_back_dated_first_audit_are_new_ones(tree: Tree, tmp_path: Path, hooks: dict[str, Receiver]) -> None:
    """An export's first audit, run as of two days ago (a catch-up), is live: its notices were dated then, so the first
    failed delivery found them older than give_up_after and gave them up. They are queued now."""
    tree.export("ds", t("2026-11-27T00:00"))
    hooks["pager"].down = True
    config = settings(tmp_path, tree, "serve", {"pager": hooks["pager"]}, {"missed": ("missing", ["pager"])})
    as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    code, _out = run("audit", "--config", str(tmp_path / "serve.toml"), "--as-of", as_of.strftime("%Y-%m-%dT%H:%M:%SZ"), "--format", "json")
    assert code == 1
    catalog = open_catalog(config.catalog.url)
    notices = catalog.notices()
    assert notices and all(n.state == "pending" and n.created_at > datetime.now(UTC) - timedelta(minutes=5) for n in notices), notices
    assert all(e.opened_at == as_of for e in catalog.open_episodes().values())  # the episodes are dated as of the audit


def test_a_recovery_goes_to_the_channels_the_alert_went_to(tree: Tree, tmp_path: Path, hooks: dict[str, Receiver]) -> None:
    """The rule moved from channel `old` to `new` while an episode was open: `new` got a recovery for an alert it never
    had, and `old`, which had the alert, never heard it ended."""
    tree.export("ds", t("2026-11-27T00:00"))
    both = {"old": hooks["old"], "new": hooks["new"]}
    before = Service(settings(tmp_path, tree, "serve", both, {"missed": ("missing", ["old"])}), t("2026-11-27T05:00"))
    before.at(t("2026-11-27T05:00"))
    before.close()
    after = Service(settings(tmp_path, tree, "serve", both, {"missed": ("missing", ["new"])}), t("2026-11-27T05:20"))
    tree.export("ds", t("2026-11-27T03:00"), landed=t("2026-11-27T05:30"))
    after.at(t("2026-11-27T05:40"))
    after.at(t("2026-11-27T05:41"))
    assert [r["kind"] for r in hooks["old"].received] == ["alert", "recovery"]
    assert hooks["new"].received == []
    after.close()


def test_channel_credentials_stay_out_of_the_logs_at_info(hooks: dict[str, Receiver], caplog: pytest.LogCaptureFixture) -> None:
    """With INFO logging on (an operator debugging), httpx logged every notice's URL with its user-info and token, and
    Apprise its plugins' token path segments."""
    import logging

    from auditor.alerts import notifier_for

    port = hooks["pager"].server.server_address[1]
    secrets = ("s3cretpassw0rd", "tok-in-the-query-123", "path-token-0123456789", "apprise-pass-42", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")
    with caplog.at_level(logging.DEBUG):
        notifier_for("webhook", url=f"http://hookuser:{secrets[0]}@127.0.0.1:{port}/hook/{secrets[2]}?token={secrets[1]}", secret=KEY).notify(
            "web: missing", {"title": "t"}, notice_id=1, sent_at=datetime.now(UTC))
        notifier_for("apprise", url=f"json://appuser:{secrets[3]}@127.0.0.1:{port}/{secrets[2]}?token={secrets[1]}").notify(
            "web: missing", {"title": "t"}, notice_id=2, sent_at=datetime.now(UTC))
        notifier_for("apprise", url=f"tgram://123456789:{secrets[4]}/12345678/")  # a bot token where a host would be
        logging.getLogger("apprise").debug("Telegram POST URL: https://api.telegram.org/bot%s:%s/sendMessage", "123456789", secrets[4])  # as Apprise logs a send
    assert len(hooks["pager"].received) == 2
    logged = caplog.text
    assert "HTTP Request: POST" in logged and "REDACTED" in logged  # the records are there, without the secrets
    assert not [s for s in secrets if s in logged], logged
