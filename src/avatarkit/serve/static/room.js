// Watch a LiveKit-based avatar (HeyGen): join the room with livekit-client and show its tracks.
// livekit-client is served by the avatarkit server from an npm install (never bundled here).

const LIVEKIT_CLIENT = "/vendor/livekit-client.mjs";

export async function loadLivekit() {
  const response = await fetch(LIVEKIT_CLIENT, { method: "HEAD" });
  if (!response.ok) {
    const hint = await (await fetch(LIVEKIT_CLIENT)).text();
    throw new Error(hint || "livekit-client is not available on this server");
  }
  return import(LIVEKIT_CLIENT);
}

export class AvatarRoom {
  constructor(video, status) {
    this.video = video;
    this.status = status; // (text, isError) => void
    this.room = null;
    this.audioElements = [];
    this.info = { state: "idle", url: null, error: null, tracks: 0 };
  }

  async join(url, token) {
    this.info = { ...this.info, state: "loading", url };
    let lk;
    try {
      lk = await loadLivekit();
    } catch (error) {
      this.info = { ...this.info, state: "unavailable", error: String(error.message || error) };
      this.status(this.info.error, true);
      return;
    }
    const room = new lk.Room({ adaptiveStream: true });
    this.room = room;
    room.on(lk.RoomEvent.TrackSubscribed, (track) => {
      this.info.tracks += 1;
      if (track.kind === "video") {
        track.attach(this.video);
        this.video.hidden = false;
        this.status("", false);
      } else if (track.kind === "audio") {
        const element = track.attach();
        element.hidden = true;
        document.body.appendChild(element);
        this.audioElements.push(element);
      }
    });
    room.on(lk.RoomEvent.Disconnected, () => {
      this.info.state = "disconnected";
      this.status("the avatar's room closed", true);
    });
    this.info.state = "connecting";
    this.status(`joining the avatar's room at ${url}…`, false);
    try {
      await room.connect(url, token);
      this.info.state = "connected";
      this.status("waiting for the avatar's video…", false);
    } catch (error) {
      this.info = { ...this.info, state: "failed", error: String(error.message || error) };
      this.status(`cannot reach the avatar's room at ${url}: ${this.info.error}`, true);
    }
  }

  // Browsers start room audio only after a user gesture.
  unlock() {
    if (this.room) this.room.startAudio().catch(() => {});
  }

  leave() {
    if (this.room) this.room.disconnect();
    for (const element of this.audioElements) element.remove();
    this.audioElements = [];
  }
}
