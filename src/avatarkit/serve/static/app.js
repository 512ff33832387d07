// The avatarkit serve page: one WebSocket, one avatar session (message schema: docs/guide/serve.md).

import { Face } from "./face.js";
import { Microphone } from "./mic.js";
import { Player } from "./player.js";
import { AvatarRoom } from "./room.js";

const $ = (id) => document.getElementById(id);
const ui = {
  title: $("title"),
  connection: $("connection"),
  state: $("state"),
  face: $("face"),
  video: $("video"),
  note: $("stage-note"),
  transcript: $("transcript"),
  form: $("composer"),
  text: $("text"),
  send: $("send"),
  interrupt: $("interrupt"),
  mic: $("mic"),
  start: $("start"),
  firstSpeech: $("m-first-speech"),
  firstToken: $("m-first-token"),
  duration: $("m-duration"),
  route: $("m-route"),
};

// Defence in depth: the server forbids framing (X-Frame-Options, CSP frame-ancestors); should a
// proxy strip those headers, a framed copy of this page still never offers to start a session.
const framed = window.top !== window.self;

// A deployment may require a credential: the page's link carries it after "#token=" (the
// fragment never reaches servers, proxies or their logs); it is sent with "start".
const credential = new URLSearchParams(location.hash.slice(1)).get("token");
const socketUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
let socket = null;
let started = false; // the person clicked Start: after a server restart, start again by itself
let goingAway = false;
let reconnectDelay = 500;
let reconnectTries = 0;
let resumed = null; // what to tell the person once a restarted session is ready

const player = new Player((utterance) => send({ type: "played", utterance }));
const face = new Face(ui.face, () => player.level());
const room = new AvatarRoom(ui.video, note);
const turns = new Map(); // turn number -> transcript <li>
let ready = false;
let hearing = null; // the <li> showing what the user is saying (interim transcript)
const mic = new Microphone((frame) => {
  // only between mic_start and mic_stop: the server refuses binary messages otherwise
  if (window.avatarkit.mic.state === "on" && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(frame);
  }
});

// What the page is doing, for people debugging it and for the browser tests.
window.avatarkit = {
  connection: "connecting",
  state: "idle",
  display: null,
  closeCode: null,
  errors: [],
  metrics: null,
  worker: null,
  reconnects: 0,
  get audio() {
    return {
      ...player.stats,
      context: player.state,
      playing: player.playing,
      output: player.outputLevel(),
    };
  },
  get mouth() {
    return face.openness;
  },
  get room() {
    return room.info;
  },
  // The microphone: "off", "starting", "on"; the server's view; what it heard.
  mic: { state: "off", server: "off", error: null, userSpeaking: false, transcripts: [] },
  get micStats() {
    return mic.stats;
  },
};

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function sendStart() {
  send(credential ? { type: "start", token: credential } : { type: "start" });
}

function note(text, isError = false) {
  ui.note.textContent = text;
  ui.note.classList.toggle("error", isError);
}

function setConnection(status, label) {
  window.avatarkit.connection = status;
  ui.connection.dataset.status = status;
  ui.connection.textContent = label;
}

function setState(state) {
  window.avatarkit.state = state;
  ui.state.dataset.state = state;
  ui.state.textContent = state;
  ui.interrupt.disabled = !ready || !(state === "thinking" || state === "speaking");
}

function enableInput(enabled) {
  ui.text.disabled = !enabled;
  ui.send.disabled = !enabled;
  if (enabled) ui.text.focus();
}

function addEntry(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  ui.transcript.appendChild(li);
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  return li;
}

function turnEntry(turn) {
  let li = turns.get(turn);
  if (!li) {
    li = addEntry("avatar", "");
    li.dataset.turn = turn;
    turns.set(turn, li);
  }
  return li;
}

function seconds(value) {
  return value == null ? "–" : `${Math.round(value * 1000)} ms`;
}

function showError(message) {
  window.avatarkit.errors.push(message);
  addEntry("error", message.message);
}

const handlers = {
  hello(message) {
    if (message.title) {
      ui.title.textContent = message.title;
      document.title = `avatarkit · ${message.title}`;
    }
    ui.text.maxLength = message.limits.max_text_chars;
    const previousWorker = window.avatarkit.worker;
    window.avatarkit.worker = message.worker;
    if (framed) {
      setConnection("framed", "not started: inside another page");
      note("this page cannot be used inside another page; open it in its own tab", true);
      return;
    }
    if (started) {
      // The server we talked to restarted; this is a new one (or the same, back again).
      setConnection("starting", "starting…");
      resumed =
        previousWorker && previousWorker !== message.worker
          ? "the server restarted: reconnected to another one; the conversation starts afresh"
          : "reconnected; the conversation starts afresh";
      note(resumed);
      sendStart();
      return;
    }
    setConnection("waiting", "ready to start");
    ui.start.disabled = false;
    note(
      message.auth && !credential
        ? "this server needs a link with an access token (…#token=…); ask whoever runs it"
        : "",
    );
  },
  going_away() {
    goingAway = true;
    // the server ends the microphone stream as it drains: stop capturing now
    if (mic.on || window.avatarkit.mic.state !== "off") stopMic(false);
    ui.mic.disabled = true;
    note("the server is restarting; the current reply finishes, then this page reconnects");
  },
  ready(message) {
    ready = true;
    reconnectDelay = 500;
    reconnectTries = 0;
    ui.start.hidden = true;
    window.avatarkit.display = message.display;
    ui.route.textContent = `${message.route} · ${message.renderer}`;
    setConnection("connected", "connected");
    enableInput(true);
    ui.mic.hidden = !message.listen;
    ui.mic.disabled = !message.listen;
    if (message.display === "audio") {
      ui.face.hidden = false;
      face.start();
      note("");
    } else if (message.display === "none") {
      note(`${message.renderer} shows the avatar elsewhere; the conversation is below.`);
    }
    setState(message.state);
    if (resumed) {
      note(resumed);
      addEntry("notice", resumed);
      resumed = null;
    }
  },
  viewer(message) {
    room.join(message.url, message.token);
  },
  state(message) {
    setState(message.state);
    if (message.state === "idle") for (const li of turns.values()) li.classList.remove("speaking");
  },
  delta(message) {
    const li = turnEntry(message.turn);
    li.textContent += message.text;
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
  },
  sentence_start(message) {
    turnEntry(message.turn).classList.add("speaking");
  },
  sentence_end(message) {
    if (message.interrupted) turnEntry(message.turn).classList.add("interrupted");
  },
  metrics(message) {
    window.avatarkit.metrics = message;
    ui.firstSpeech.textContent = seconds(message.time_to_first_speech);
    ui.firstToken.textContent = seconds(message.time_to_first_token);
    ui.duration.textContent = seconds(message.duration) + (message.interrupted ? " (interrupted)" : "");
    turnEntry(message.turn).classList.remove("speaking");
    // cut between two sentences there is no interrupted sentence_end: mark the turn here too
    if (message.interrupted) turnEntry(message.turn).classList.add("interrupted");
  },
  error(message) {
    showError(message);
  },
  audio_start(message) {
    player.begin(message.utterance);
  },
  audio_end(message) {
    player.end(message.utterance);
  },
  audio_stop() {
    player.stop();
  },
  mic(message) {
    window.avatarkit.mic.server = message.state;
    if (message.state === "off" && mic.on) stopMic(false); // the server stopped listening
  },
  user_speech_start() {
    window.avatarkit.mic.userSpeaking = true;
    ui.mic.classList.add("hearing");
  },
  user_speech_end() {
    window.avatarkit.mic.userSpeaking = false;
    ui.mic.classList.remove("hearing");
  },
  user_transcript(message) {
    window.avatarkit.mic.transcripts.push({ text: message.text, final: message.final });
    if (!hearing) hearing = addEntry("user interim", "");
    hearing.textContent = message.text;
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    if (message.final) {
      hearing.classList.remove("interim");
      hearing = null;
    }
  },
};

function setMic(state) {
  window.avatarkit.mic.state = state;
  ui.mic.dataset.state = state;
  ui.mic.setAttribute("aria-pressed", String(state === "on"));
  ui.mic.textContent = state === "on" ? "Stop mic" : state === "starting" ? "Mic…" : "Talk";
}

async function startMic() {
  setMic("starting");
  player.unlock(); // a user gesture: the reply's audio may play
  room.unlock();
  try {
    const rate = await mic.start();
    if (window.avatarkit.mic.state !== "starting" || !ready) {
      mic.stop(); // stopped (or disconnected) while the browser was asking for the microphone
      return;
    }
    send({ type: "mic_start", sample_rate: rate });
    setMic("on");
  } catch (error) {
    window.avatarkit.mic.error = String(error.message || error);
    showError({ message: `microphone: ${window.avatarkit.mic.error}` });
    setMic("off");
  }
}

function stopMic(tellServer = true) {
  mic.stop();
  if (tellServer) send({ type: "mic_stop" });
  ui.mic.classList.remove("hearing");
  setMic("off");
}

function connect() {
  socket = new WebSocket(socketUrl);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("open", () => setConnection("connecting", "connecting…"));
  socket.addEventListener("message", onMessage);
  socket.addEventListener("close", onClose);
  socket.addEventListener("error", () => setConnection("error", "connection error"));
}

function onMessage(event) {
  if (event.data instanceof ArrayBuffer) {
    player.push(event.data);
    return;
  }
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    return;
  }
  const handler = handlers[message.type];
  if (handler) handler(message);
}

function onClose(event) {
  window.avatarkit.closeCode = event.code;
  ready = false;
  ui.start.disabled = true;
  enableInput(false);
  if (mic.on || window.avatarkit.mic.state !== "off") stopMic(false);
  ui.mic.disabled = true;
  setState("closed");
  player.stop();
  room.leave();
  if ((event.code === 1012 || goingAway) && !framed) reconnectTries = 6;
  if (reconnectTries > 0) {
    // The server is restarting (a deploy, a scale-down): another one takes this page. Tries
    // for about 20 s, backing off, while the old server goes and a new one comes.
    goingAway = false;
    reconnectTries -= 1;
    window.avatarkit.reconnects += 1;
    setConnection("connecting", "reconnecting…");
    note("the server restarted; reconnecting…");
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 8000);
    return;
  }
  const reasons = {
    1008: "refused by the server",
    1011: "the avatar session could not start",
    1012: "the server is shutting down",
    1013: "the server is at its session limit",
  };
  setConnection("closed", `disconnected${reasons[event.code] ? ": " + reasons[event.code] : ""}`);
}

// A paid avatar session starts only here, on the person's click: never on page load.
ui.start.addEventListener("click", () => {
  if (framed || ui.start.disabled) return;
  ui.start.disabled = true;
  player.unlock(); // a user gesture: audio may start
  room.unlock();
  started = true;
  setConnection("starting", "starting…");
  note("starting the avatar…");
  sendStart();
});

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !ready) return;
  player.unlock(); // a user gesture: audio may start
  room.unlock();
  addEntry("user", text);
  send({ type: "send", text });
  ui.text.value = "";
});

ui.mic.addEventListener("click", () => {
  if (!ready) return;
  if (mic.on || window.avatarkit.mic.state === "starting") stopMic();
  else startMic();
});

ui.interrupt.addEventListener("click", () => {
  player.stop(); // silence at once; the server confirms with audio_stop
  send({ type: "interrupt" });
});

window.addEventListener("pagehide", () => {
  goingAway = false;
  started = false;
  reconnectTries = 0;
  if (socket) socket.close(1000);
});

connect();
