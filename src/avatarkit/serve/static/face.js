// A drawn face whose mouth opens with the loudness of the audio being played.

export const MOUTH_COLOR = "#7a1f2b";

export class Face {
  constructor(canvas, level) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.level = level; // () => current RMS loudness, 0..1
    this.openness = 0;
    this.blinkUntil = 0;
    this.nextBlink = performance.now() + 2500;
    this.running = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    const frame = (now) => {
      if (!this.running) return;
      this.update(now);
      this.draw(now);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  update(now) {
    // Speech RMS is ~0.05-0.3: map it to 0..1, open fast, close a little slower.
    const target = Math.min(1, Math.max(0, (this.level() - 0.01) * 5));
    const rate = target > this.openness ? 0.6 : 0.3;
    this.openness += (target - this.openness) * rate;
    if (this.openness < 0.01) this.openness = 0;
    if (now > this.nextBlink) {
      this.blinkUntil = now + 120;
      this.nextBlink = now + 2500 + Math.random() * 3000;
    }
  }

  draw(now) {
    const g = this.context;
    const { width: w, height: h } = this.canvas;
    g.clearRect(0, 0, w, h);
    // head
    g.fillStyle = "#f2c7a5";
    g.beginPath();
    g.ellipse(w / 2, h / 2, w * 0.36, h * 0.42, 0, 0, Math.PI * 2);
    g.fill();
    // hair
    g.fillStyle = "#3b2a20";
    g.beginPath();
    g.ellipse(w / 2, h * 0.2, w * 0.34, h * 0.14, 0, Math.PI, Math.PI * 2);
    g.fill();
    // eyes
    const blinking = now < this.blinkUntil;
    g.fillStyle = "#1d2330";
    for (const x of [w * 0.38, w * 0.62]) {
      g.beginPath();
      g.ellipse(x, h * 0.42, w * 0.035, blinking ? h * 0.004 : h * 0.04, 0, 0, Math.PI * 2);
      g.fill();
    }
    // mouth: a closed line when silent, an open ellipse that follows the loudness
    const mouthY = h * 0.66;
    const mouthW = w * (0.14 + 0.04 * this.openness);
    const mouthH = h * 0.11 * this.openness;
    g.fillStyle = MOUTH_COLOR;
    g.strokeStyle = MOUTH_COLOR;
    if (mouthH < 1.5) {
      g.lineWidth = 4;
      g.lineCap = "round";
      g.beginPath();
      g.moveTo(w / 2 - mouthW, mouthY);
      g.lineTo(w / 2 + mouthW, mouthY);
      g.stroke();
    } else {
      g.beginPath();
      g.ellipse(w / 2, mouthY, mouthW, mouthH, 0, 0, Math.PI * 2);
      g.fill();
    }
  }
}
