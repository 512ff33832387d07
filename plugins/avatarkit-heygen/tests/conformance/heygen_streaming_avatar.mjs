// Drives HeyGen's official SDK (npm @heygen/streaming-avatar) against our fake HeyGen, in Node:
// the HTTP flow of a session (create_token, new, start, task, start/stop_listening, interrupt,
// keep_alive, stop).
// Usage: node heygen_streaming_avatar.mjs SDK_MODULE BASE_URL API_KEY AVATAR
// The SDK's LiveKit room (video for a browser) is not joined: there is no LiveKit server on
// loopback. Every HTTP request is the SDK's own. Prints one JSON line per step.
import { pathToFileURL } from "node:url";

const [sdkModule, baseUrl, apiKey, avatar] = process.argv.slice(2);
const log = (step, data = {}) => console.log(JSON.stringify({ step, ...data }));

globalThis.RTCPeerConnection ??= class {
  addTransceiver() {}
};

const sdk = await import(pathToFileURL(sdkModule).href);

// The customer's backend creates the session token with the API key (HeyGen's SDK docs).
const made = await fetch(`${baseUrl}/v1/streaming.create_token`, {
  method: "POST",
  headers: { "x-api-key": apiKey },
});
if (!made.ok) throw new Error(`create_token: HTTP ${made.status}`);
const token = (await made.json()).data.token;
log("create_token");

const avatarClient = new sdk.default({ token, basePath: baseUrl });
const info = await avatarClient.newSession({
  avatarName: avatar,
  quality: sdk.AvatarQuality.Low,
  voice: { rate: 1.0, emotion: sdk.VoiceEmotion.FRIENDLY },
  language: "en",
  disableIdleTimeout: false,
  activityIdleTimeout: 120,
});
log("new", { session_id: info.session_id, has_url: Boolean(info.url) });
avatarClient.sessionId = info.session_id;
await avatarClient.startSession();
log("start");
const task = await avatarClient.speak({
  text: "Hello from the official SDK.",
  taskType: sdk.TaskType.REPEAT,
  taskMode: sdk.TaskMode.ASYNC,
});
log("task", { task });
await avatarClient.startListening();
await avatarClient.stopListening();
log("listening");
await avatarClient.interrupt();
log("interrupt");
await avatarClient.keepAlive();
log("keep_alive");
await avatarClient.stopAvatar();
log("stop");
let refused = null;
try {
  await avatarClient.speak({ text: "after stop", taskType: sdk.TaskType.REPEAT });
} catch (error) {
  refused = { status: error.status };
}
log("after_stop", { refused });
process.exit(0);
