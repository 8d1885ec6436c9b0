"""The chat page as a person uses it, in a real headless Chromium driven by selenium, against a real ChatServer.

The model's steps are paced (a hook on its final norm lets it take only the steps the test allows), so the test sees
a reply midway through and checks what the page shows then, instead of racing a fast model. Skipped without
Debian's chromium and chromium-driver (`bash .ci/install-browser`) or selenium (the test extra). The flow test leaves
its last screenshot in its tmp_path as chat_page.png.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tests.chat_fixtures import serving, tiny_chat_model
from tinylm.serve.server import ChatServer, ServeOptions
from tinylm.serve.session import ChatSession

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs chromium and chromedriver on PATH: bash .ci/install-browser")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install -e .[test]")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--window-size=900,700")


class Pace:
    """A forward hook that lets the model take a step only when the test allows one; `run_free` lets it run.

    A held step waits up to HOLD_S and then goes on (so a failed test cannot hang its server for good); HOLD_S is
    far beyond the page's waits, since a loaded machine can take half a minute between a hold and its release."""

    HOLD_S = 180

    def __init__(self):
        self.condition = threading.Condition()
        self.steps: int | None = None  # None: no limit

    def __call__(self, module, args) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.steps is None or self.steps > 0, timeout=self.HOLD_S)
            if self.steps:
                self.steps -= 1

    def hold(self) -> None:
        with self.condition:
            self.steps = 0

    def allow(self, steps: int) -> None:
        with self.condition:
            self.steps += steps
            self.condition.notify_all()

    def run_free(self) -> None:
        with self.condition:
            self.steps = None
            self.condition.notify_all()


def chat_server(pace: Pace | None = None, **options) -> ChatServer:
    """A server of the tiny chat model, sampling (seeded, so a reply can be recomputed) for varied text."""
    model, tokenizer = tiny_chat_model(block_size=256)
    if pace is not None:
        model.transformer.ln_f.register_forward_pre_hook(pace)  # once per generated token
    session = ChatSession(model, tokenizer, max_new_tokens=24, temperature=1.0, seed=0)
    return ChatServer(ServeOptions(**{"port": 0, "quiet": True, "max_chars": 2000, **options}), session)


def expected_reply(server: ChatServer, messages: list[dict]) -> str:
    session = server.app.session.with_history(messages[:-1])
    return "".join(session.reply(messages[-1]["content"]))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class Page:
    """The chat page in the browser, read and used as a person would."""

    def __init__(self, driver, server: ChatServer):
        self.driver = driver
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        self.box = driver.find_element(By.ID, "text")
        self.send_button = driver.find_element(By.ID, "send")
        self.stop_button = driver.find_element(By.ID, "stop")
        driver.get_log("browser")  # from here on, the log holds what this page did

    def wait(self, condition, timeout: float = 20):
        return WebDriverWait(self.driver, timeout).until(lambda _: condition())

    def send(self, text: str) -> None:
        self.driver.execute_script("arguments[0].value = arguments[1]", self.box, text)  # newlines included
        self.send_button.click()

    def lines(self, kind: str = "") -> list[str]:
        divs = self.driver.find_elements(By.CSS_SELECTOR, f"#log div{kind}")
        return [div.get_property("textContent") for div in divs]

    def reply(self) -> str:
        """The newest bot line's text."""
        return self.lines(".assistant")[-1].removeprefix("bot: ")

    def in_flight(self) -> bool:
        return not self.send_button.is_enabled()

    def conversation(self) -> list[dict]:
        """What the page will send the server with its next message."""
        return self.driver.execute_script("return messages")

    def script(self, code: str):
        return self.driver.execute_script(f"return {code}")

    def uncaught_errors(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if "Uncaught" in entry["message"]]


def test_a_conversation_streams_stops_goes_on_and_survives_the_server_going_away(browser, tmp_path):
    pace = Pace()
    with serving(chat_server(pace)) as server:
        page = Page(browser, server)
        assert page.script("document.title") == "tinylm chat" and not page.stop_button.is_enabled()

        # A reply streams in: part of it shows while Send waits and Stop is offered; then it completes.
        pace.hold()
        page.send("Hello!")
        pace.allow(4)
        page.wait(lambda: page.reply() != "")
        assert page.in_flight() and page.stop_button.is_enabled()
        pace.run_free()
        page.wait(lambda: not page.in_flight())
        first = expected_reply(server, [{"role": "user", "content": "Hello!"}])
        assert page.reply() == first and not page.stop_button.is_enabled()

        # Stop ends a reply midway: what arrived stays, on the page and in the conversation.
        pace.hold()
        page.send("Name a color.")
        pace.allow(4)
        page.wait(lambda: page.reply() != "")
        page.stop_button.click()
        page.wait(lambda: not page.in_flight())
        pace.run_free()  # the server notices its visitor left at its next write
        partial = page.reply()
        history = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": first.strip()}]
        full = expected_reply(server, [*history, {"role": "user", "content": "Name a color."}])
        assert partial and full.startswith(partial) and len(partial) < len(full)
        assert page.lines(".note")[-1].startswith("(stopped")
        history += [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": partial.strip()}]
        assert page.conversation() == history

        # The conversation goes on from there.
        page.send("Thank you, goodbye.")
        page.wait(lambda: not page.in_flight() and len(page.conversation()) == 6)
        assert page.reply() == expected_reply(server, [*history, {"role": "user", "content": "Thank you, goodbye."}])

    # The server is gone: the page says so, gives the message back, and lets the visitor send again.
    page.send("Are you there?")
    page.wait(lambda: page.lines(".error"))
    assert page.lines(".error")[-1].startswith("error: lost the connection to the server (is it still running?)")
    assert not page.in_flight() and page.box.get_property("value") == "Are you there?"
    assert page.lines()[-2:] == ["you: Are you there?", page.lines(".error")[-1]]  # no empty "bot:" left behind
    assert page.uncaught_errors() == []
    browser.save_screenshot(str(Path(tmp_path) / "chat_page.png"))


def test_the_log_scrolls_long_words_wrap_and_a_refusal_says_what_helps(browser):
    with serving(chat_server(max_chars=600)) as server:
        page = Page(browser, server)
        page.send("\n".join(f"line {i}" for i in range(40)))
        page.wait(lambda: not page.in_flight())
        # The log scrolls by itself to its newest line; the page does not, and the input stays in view.
        assert page.script("log.scrollHeight > log.clientHeight")
        assert page.script("log.scrollHeight - log.scrollTop - log.clientHeight") <= 1
        assert page.script("document.scrollingElement.scrollHeight <= window.innerHeight")
        assert page.script("box.getBoundingClientRect().bottom <= window.innerHeight")

        page.send("x" * 500)  # one unbroken word, wider than the window
        page.wait(lambda: not page.in_flight())
        assert page.script("document.scrollingElement.scrollWidth <= window.innerWidth")
        assert page.script("log.scrollWidth <= log.clientWidth")

        # In a new chat a too-long message can only be shortened; the refusal says so and gives it back.
        browser.find_element(By.ID, "reset").click()
        page.send("y " * 301)
        page.wait(lambda: page.lines(".error"))
        assert page.lines(".error") == ["error: your message has 601 characters; the limit is 600: shorten it"]
        assert page.box.get_property("value") == ("y " * 301).strip()
        assert page.uncaught_errors() == []


def test_a_streaming_reply_leaves_a_reader_who_scrolled_up_where_they_are(browser):
    """On main before this layout, every piece of a reply pulled the log back to its end."""
    pace = Pace()
    with serving(chat_server(pace, max_chars=2000)) as server:
        page = Page(browser, server)
        page.send("\n".join(f"line {i}" for i in range(40)))  # a log taller than its box
        page.wait(lambda: not page.in_flight())
        pace.hold()
        page.send("Hello!")
        pace.allow(2)
        page.wait(lambda: page.reply() != "")
        page.script("log.scrollTop = 0")  # the reader scrolls up to reread
        pace.allow(8)
        page.wait(lambda: len(page.reply()) > 0 and pace.steps == 0)
        assert page.script("log.scrollTop") == 0, "the reader was pulled back to the end"
        page.script("log.scrollTop = log.scrollHeight")  # back at the end: the log follows the reply again
        pace.run_free()
        page.wait(lambda: not page.in_flight())
        assert page.script("log.scrollHeight - log.scrollTop - log.clientHeight") <= 8
        assert page.uncaught_errors() == []
