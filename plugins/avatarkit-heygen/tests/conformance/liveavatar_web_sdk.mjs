// Drives LiveAvatar's official web SDK (npm @heygen/liveavatar-web-sdk) against our fake
// LiveAvatar, in Node: a LITE session's HTTP and WebSocket flow, then stop.
// Usage: node --experimental-websocket liveavatar_web_sdk.mjs SDK_BUNDLE BASE_URL API_KEY
// Browser-only parts are stubbed: the LiveKit room (the avatar's video; nothing to join on
// loopback) and MediaStream. Everything on the wire is the SDK's own code. Prints one JSON
// line per step; exits non-zero on any failure.
import { pathToFileURL } from "node:url";

const [bundle, baseUrl, apiKey] = process.argv.slice(2);
const log = (step, data = {}) => console.log(JSON.stringify({ step, ...data }));
const fail = (message) => {
  console.error(message);
  process.exit(1);
};
const within = (promise, ms, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), ms)),
  ]);

globalThis.RTCPeerConnection ??= class {
  addTransceiver() {}
};
globalThis.MediaStream ??= class {
  addTrack() {}
  removeTrack() {}
  getVideoTracks() { return []; }
  getAudioTracks() { return []; }
};

const sdk = await import(pathToFileURL(bundle).href);

// The customer's backend creates the session token with the API key (LiveAvatar's docs).
const made = await fetch(`${baseUrl}/v1/sessions/token`, {
  method: "POST",
  headers: { "X-API-KEY": apiKey, "Content-Type": "application/json" },
  body: JSON.stringify({ mode: "LITE", avatar_id: "av-web-sdk", is_sandbox: false }),
});
if (!made.ok) fail(`token: HTTP ${made.status}`);
const { data } = await made.json();
log("token", { session_id: data.session_id });

const session = new sdk.LiveAvatarSession(data.session_token, { apiUrl: baseUrl });
log("mode", { mode: session.mode });
// No LiveKit server on loopback: the room join (video for a browser) is stubbed.
session.room.connect = async () => {};
session.room.disconnect = async () => {};
session.connectionQualityIndicator.start = () => {};
session.connectionQualityIndicator.stop = () => {};

await within(session.start(), 10000, "session.start()");
log("started", { state: session.state, session_id: session.sessionId });
await new Promise((resolve) => setTimeout(resolve, 300)); // the server reports "connected"

// 1.5 s of PCM16 24 kHz as base64: the SDK cuts it into agent.speak messages itself.
const pcm = Buffer.alloc(24000 * 2 * 1.5);
for (let i = 0; i < pcm.length / 2; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin(i / 9)), i * 2);
const ended = new Promise((resolve) =>
  session.on(sdk.AgentEventsEnum.AVATAR_SPEAK_ENDED, (event) => resolve(event)),
);
const started = new Promise((resolve) =>
  session.on(sdk.AgentEventsEnum.AVATAR_SPEAK_STARTED, (event) => resolve(event)),
);
const eventId = session.repeatAudio(pcm.toString("base64"));
log("speak_started", await within(started, 5000, "avatar.speak_started"));
log("speak_ended", await within(ended, 5000, "avatar.speak_ended"));
log("repeat_audio", { event_id: eventId });

session.startListening();
session.stopListening();
session.interrupt();
await session.keepAlive();
await new Promise((resolve) => setTimeout(resolve, 200));
log("commands_sent");

const disconnected = new Promise((resolve) =>
  session.on(sdk.SessionEvent.SESSION_DISCONNECTED, (reason) => resolve(reason)),
);
await session.stop();
log("stopped", { reason: await within(disconnected, 5000, "session.disconnected") });
await new Promise((resolve) => setTimeout(resolve, 300)); // the stop request completes
process.exit(0);
