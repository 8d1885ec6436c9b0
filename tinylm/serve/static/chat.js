// The chat page: every message goes to POST /chat with the conversation before it, and the reply is shown as its
// server-sent events arrive. While a reply streams, Send waits and Stop ends it; a refused or failed message goes
// back into the box, so nothing typed is lost.
"use strict";

const messages = [];  // the conversation as the server will see it next: user and assistant turns
const log = document.getElementById("log");
const form = document.getElementById("form");
const box = document.getElementById("text");
const send = document.getElementById("send");
const stop = document.getElementById("stop");
let inFlight = null;  // the AbortController of the reply being streamed, if any
let chatNumber = 0;  // New chat counts up: a reply that ends after it belongs to the old conversation

function line(kind, text) {
  const follow = atNewest();
  const div = document.createElement("div");
  div.className = kind;
  div.textContent = text;
  log.appendChild(div);
  if (follow) scrollToNewest();
  return div;
}

// Whether the reader is looking at the end of the log (within a few pixels): only then does new text scroll it, so
// someone who scrolled up to reread stays where they are while a reply streams in.
function atNewest() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 8;
}

function scrollToNewest() {
  log.scrollTop = log.scrollHeight;
}

function setInFlight(controller) {
  inFlight = controller;
  send.disabled = controller !== null;
  stop.disabled = controller === null;
}

function giveBack(text) {
  if (!box.value) box.value = text;  // unless something new was typed meanwhile
}

async function errorOf(response) {
  try {
    return "error: " + (await response.json()).error;
  } catch {
    return `error: the server answered ${response.status} ${response.statusText}`;
  }
}

// Shows the reply in `bubble` as it streams in, and keeps its text, and what the server dropped, in `progress`.
async function readReply(response, bubble, progress) {
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = JSON.parse(event.slice("data: ".length));
      if (data.text) {
        const follow = atNewest();
        progress.reply += data.text;
        if (data.tool) {  // the calculator's text, in its own colour
          const span = document.createElement("span");
          span.className = "tool";
          span.title = "written by the calculator";
          span.textContent = data.text;
          bubble.appendChild(span);
        } else {
          bubble.append(data.text);
        }
        if (follow) scrollToNewest();
      }
      if (data.done) {
        progress.dropped = data.dropped;
        progress.done = true;
      }
    }
  }
}

form.onsubmit = async (event) => {
  event.preventDefault();
  const text = box.value.trim();
  if (!text || inFlight) return;
  const controller = new AbortController(), chat = chatNumber;
  setInFlight(controller);
  box.value = "";
  scrollToNewest();  // sending a message brings the reader back to the conversation's end
  line("user", "you: " + text);
  const bubble = line("assistant", "bot: ");
  const progress = {reply: "", dropped: 0, done: false};
  try {
    const response = await fetch("/chat", {
      method: "POST", headers: {"Content-Type": "application/json"}, signal: controller.signal,
      body: JSON.stringify({messages: [...messages, {role: "user", content: text}]}),
    });
    if (!response.ok) {
      bubble.className = "error";
      bubble.textContent = await errorOf(response);
      giveBack(text);
      return;
    }
    await readReply(response, bubble, progress);
    if (!progress.done) throw new Error("the reply broke off");
  } catch (error) {
    if (chat !== chatNumber) return;  // New chat stopped it: nothing of it stays
    if (!controller.signal.aborted) {  // the server went away, before or during the reply
      if (!progress.reply) bubble.remove();
      line("error", "error: lost the connection to the server (is it still running?); your message is back in the " +
                    "box: send it again");
      giveBack(text);
      return;
    }
    line("note", "(stopped: the reply so far stays in the conversation)");
  } finally {
    setInFlight(null);
    box.focus();
  }
  messages.splice(0, progress.dropped);  // what the model no longer sees need not be sent again
  messages.push({role: "user", content: text}, {role: "assistant", content: progress.reply.trim()});
};

stop.onclick = () => inFlight && inFlight.abort();

document.getElementById("reset").onclick = () => {
  if (inFlight) inFlight.abort();
  chatNumber += 1;
  messages.length = 0;
  log.textContent = "";
  box.focus();
};

box.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});
