// Drives LiveAvatar's official web SDK (npm @heygen/liveavatar-web-sdk) in FULL mode against our
// fake LiveAvatar's HTTP API, in Node, with a stand-in LiveKit room where LiveAvatar's two
// participants join on a schedule: the identities our renderer waits for must be the ones the
// SDK waits for, and the SDK's speak_text command is printed for comparison with ours.
// Usage: node liveavatar_web_sdk_full.mjs SDK_BUNDLE BASE_URL API_KEY AVATAR_ID AGENT_PREFIX
import { pathToFileURL } from "node:url";

const [bundle, baseUrl, apiKey, avatarIdentity, agentPrefix] = process.argv.slice(2);
const log = (step, data = {}) => console.log(JSON.stringify({ step, ...data }));
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

const made = await fetch(`${baseUrl}/v1/sessions/token`, {
  method: "POST",
  headers: { "X-API-KEY": apiKey, "Content-Type": "application/json" },
  body: JSON.stringify({ mode: "FULL", avatar_id: "av-web-sdk", avatar_persona: { language: "en" } }),
});
const { data } = await made.json();
const session = new sdk.LiveAvatarSession(data.session_token, { apiUrl: baseUrl });
log("mode", { mode: session.mode });

// The room: joined at once; "heygen" after 100 ms, LiveAvatar's agent after 1 s.
const joined = {};
const published = [];
session.room.connect = async () => {
  session.room.state = "connected";
  const join = (identity, ms) =>
    setTimeout(() => {
      joined[identity] = Date.now();
      const participant = { identity };
      session.room.remoteParticipants.set(identity, participant);
      session.room.emit("participantConnected", participant);
    }, ms);
  join(avatarIdentity, 100);
  join(`${agentPrefix}${data.session_id}`, 1000);
};
session.room.disconnect = async () => {};
session.room.localParticipant.publishData = async (payload, options) => {
  published.push({ topic: options.topic, message: JSON.parse(new TextDecoder().decode(payload)) });
};
session.connectionQualityIndicator.start = () => {};
session.connectionQualityIndicator.stop = () => {};

await within(session.start(), 10000, "session.start()");
const startedAt = Date.now();
log("started", {
  state: session.state,
  after_avatar: startedAt >= joined[avatarIdentity],
  after_agent: startedAt >= joined[`${agentPrefix}${data.session_id}`],
});
session.repeat("Hello from the web SDK.");
session.interrupt();
log("published", { published });
await session.stop();
await new Promise((resolve) => setTimeout(resolve, 300));
log("stopped");
process.exit(0);
