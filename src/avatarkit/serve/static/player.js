// Gapless playback of the browser renderer's PCM with Web Audio.
//
// Each binary frame is: uint32 utterance, uint32 sample rate (little-endian), then mono 16-bit
// little-endian PCM. Buffers are scheduled back to back on the AudioContext clock, so chunk
// boundaries add no gaps. The loudness envelope of every scheduled buffer is kept so the face can
// follow exactly what is playing at `currentTime`.

const HEADER_BYTES = 8;
const LEAD_SECONDS = 0.05; // head start when playback (re)starts from silence
const ENVELOPE_STEP = 1 / 60; // seconds per envelope value (one animation frame)

export class Player {
  constructor(onPlayed) {
    this.onPlayed = onPlayed; // called with the utterance number when it has finished playing
    this.context = null;
    this.nextTime = 0;
    this.sources = new Set();
    this.utterances = new Map(); // number -> {pending, ended}
    this.segments = []; // {start, end, envelope}
    this.stats = { buffers: 0, seconds: 0, played: 0, stops: 0 };
  }

  // Create or resume the AudioContext; call it from a user gesture too (autoplay rules).
  unlock() {
    if (!this.context) {
      this.context = new AudioContext();
      // Everything plays through an analyser: `outputLevel()` measures what is really audible.
      this.output = this.context.createAnalyser();
      this.output.fftSize = 2048;
      this.output.connect(this.context.destination);
      this.probe = new Float32Array(this.output.fftSize);
    }
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
    return this.context;
  }

  get state() {
    return this.context ? this.context.state : "none";
  }

  get playing() {
    return this.sources.size > 0;
  }

  begin(utterance) {
    this.utterances.set(utterance, { pending: 0, ended: false });
  }

  push(frame) {
    const view = new DataView(frame);
    if (frame.byteLength < HEADER_BYTES) return;
    const utterance = view.getUint32(0, true);
    const rate = view.getUint32(4, true);
    const entry = this.utterances.get(utterance);
    if (!entry) return; // stopped (interrupt) or unknown: drop
    const frames = (frame.byteLength - HEADER_BYTES) >> 1;
    if (frames === 0) return;
    const context = this.unlock();
    const buffer = context.createBuffer(1, frames, rate);
    const samples = buffer.getChannelData(0);
    for (let i = 0; i < frames; i++) samples[i] = view.getInt16(HEADER_BYTES + 2 * i, true) / 32768;

    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    const start = Math.max(this.nextTime, context.currentTime + LEAD_SECONDS);
    source.start(start);
    this.nextTime = start + buffer.duration;
    this.segments.push({ start, end: this.nextTime, envelope: envelope(samples, rate) });
    this.sources.add(source);
    entry.pending += 1;
    this.stats.buffers += 1;
    this.stats.seconds += buffer.duration;
    source.onended = () => {
      this.sources.delete(source);
      entry.pending -= 1;
      this.settle(utterance);
    };
  }

  end(utterance) {
    const entry = this.utterances.get(utterance);
    if (!entry) return;
    entry.ended = true;
    this.settle(utterance);
  }

  settle(utterance) {
    const entry = this.utterances.get(utterance);
    if (!entry || !entry.ended || entry.pending > 0) return;
    this.utterances.delete(utterance);
    this.stats.played += 1;
    this.onPlayed(utterance);
  }

  // Silence now: stop every scheduled buffer and forget queued utterances.
  stop() {
    for (const source of this.sources) {
      source.onended = null;
      try { source.stop(); } catch { /* not started yet */ }
    }
    this.sources.clear();
    this.utterances.clear();
    this.segments = [];
    this.nextTime = 0;
    this.stats.stops += 1;
  }

  // RMS of the audio leaving the AudioContext over the last ~50 ms (0 when silent).
  outputLevel() {
    if (!this.context) return 0;
    this.output.getFloatTimeDomainData(this.probe);
    let sum = 0;
    for (const x of this.probe) sum += x * x;
    return Math.sqrt(sum / this.probe.length);
  }

  // Loudness (RMS, 0..1) of what is scheduled to be audible right now (drives the mouth).
  level() {
    if (!this.context) return 0;
    const now = this.context.currentTime;
    while (this.segments.length && this.segments[0].end < now) this.segments.shift();
    const segment = this.segments.find((s) => s.start <= now && now < s.end);
    if (!segment) return 0;
    const index = Math.floor((now - segment.start) / ENVELOPE_STEP);
    return segment.envelope[Math.min(index, segment.envelope.length - 1)] || 0;
  }
}

function envelope(samples, rate) {
  const size = Math.max(1, Math.round(rate * ENVELOPE_STEP));
  const values = new Float32Array(Math.ceil(samples.length / size));
  for (let v = 0; v < values.length; v++) {
    let sum = 0;
    const end = Math.min(samples.length, (v + 1) * size);
    for (let i = v * size; i < end; i++) sum += samples[i] * samples[i];
    values[v] = Math.sqrt(sum / Math.max(1, end - v * size));
  }
  return values;
}
