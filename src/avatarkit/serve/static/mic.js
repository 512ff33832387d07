// The microphone: getUserMedia with the browser's echo cancellation, noise suppression and gain
// control, an AudioContext at 16 kHz (the browser resamples), and an AudioWorklet that cuts the
// audio into 20 ms PCM16 frames. `onFrame(ArrayBuffer)` gets each frame.

const RATE = 16000;
const FRAME_SECONDS = 0.02;

export class Microphone {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.stream = null;
    this.context = null;
    this.node = null;
    this.stats = { frames: 0, bytes: 0 };
  }

  get on() {
    return this.context !== null;
  }

  // Ask for the microphone and start framing; resolves to the sample rate of the frames.
  async start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("this browser gives no microphone access here (it needs https or localhost)");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
      },
    });
    try {
      this.context = new AudioContext({ sampleRate: RATE });
      await this.context.audioWorklet.addModule("/static/mic-worklet.js");
      const rate = this.context.sampleRate;
      const source = this.context.createMediaStreamSource(this.stream);
      this.node = new AudioWorkletNode(this.context, "pcm16-frames", {
        processorOptions: { frameSamples: Math.round(rate * FRAME_SECONDS) },
      });
      this.node.port.onmessage = (event) => {
        this.stats.frames += 1;
        this.stats.bytes += event.data.byteLength;
        this.onFrame(event.data);
      };
      // A silent sink keeps the graph pulling the worklet in every browser.
      const sink = this.context.createGain();
      sink.gain.value = 0;
      source.connect(this.node).connect(sink).connect(this.context.destination);
      if (this.context.state === "suspended") await this.context.resume();
      return rate;
    } catch (error) {
      this.stop();
      throw error;
    }
  }

  stop() {
    for (const track of this.stream ? this.stream.getTracks() : []) track.stop();
    if (this.context) this.context.close().catch(() => {});
    this.stream = null;
    this.context = null;
    this.node = null;
  }
}
