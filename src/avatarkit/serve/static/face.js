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
    const cx = w / 2;
    g.clearRect(0, 0, w, h);
    // backdrop
    g.fillStyle = "#eef1f7";
    g.beginPath();
    g.arc(cx, h / 2, w * 0.48, 0, Math.PI * 2);
    g.fill();
    // neck and shoulders
    g.fillStyle = "#e4b393";
    g.fillRect(cx - w * 0.08, h * 0.78, w * 0.16, h * 0.12);
    g.fillStyle = "#3d5afe";
    g.beginPath();
    g.ellipse(cx, h * 1.02, w * 0.34, h * 0.16, 0, Math.PI, Math.PI * 2);
    g.fill();
    // hair behind the head
    g.fillStyle = "#3b2a20";
    g.beginPath();
    g.ellipse(cx, h * 0.43, w * 0.31, h * 0.35, 0, 0, Math.PI * 2);
    g.fill();
    // head
    g.fillStyle = "#f2c7a5";
    g.beginPath();
    g.ellipse(cx, h * 0.5, w * 0.27, h * 0.32, 0, 0, Math.PI * 2);
    g.fill();
    // fringe
    g.fillStyle = "#3b2a20";
    g.beginPath();
    g.ellipse(cx, h * 0.25, w * 0.27, h * 0.11, 0, Math.PI, Math.PI * 2);
    g.ellipse(cx - w * 0.1, h * 0.25, w * 0.17, h * 0.08, 0.3, 0, Math.PI);
    g.fill();
    // cheeks
    g.fillStyle = "rgba(232, 120, 120, 0.18)";
    for (const x of [cx - w * 0.15, cx + w * 0.15]) {
      g.beginPath();
      g.arc(x, h * 0.58, w * 0.045, 0, Math.PI * 2);
      g.fill();
    }
    // eyes: white, iris, blink
    const blinking = now < this.blinkUntil;
    for (const x of [cx - w * 0.1, cx + w * 0.1]) {
      const y = h * 0.46;
      g.fillStyle = "#ffffff";
      g.beginPath();
      g.ellipse(x, y, w * 0.045, blinking ? h * 0.004 : h * 0.032, 0, 0, Math.PI * 2);
      g.fill();
      if (!blinking) {
        g.fillStyle = "#2f3a56";
        g.beginPath();
        g.arc(x, y + h * 0.004, w * 0.022, 0, Math.PI * 2);
        g.fill();
      }
      g.strokeStyle = "#3b2a20";
      g.lineWidth = 3;
      g.beginPath();
      g.moveTo(x - w * 0.05, y - h * 0.06);
      g.quadraticCurveTo(x, y - h * 0.075, x + w * 0.05, y - h * 0.06);
      g.stroke();
    }
    // nose
    g.strokeStyle = "#d9a184";
    g.lineWidth = 3;
    g.beginPath();
    g.moveTo(cx, h * 0.5);
    g.quadraticCurveTo(cx - w * 0.02, h * 0.57, cx + w * 0.01, h * 0.575);
    g.stroke();
    // mouth: a closed line when silent, an open ellipse that follows the loudness
    const mouthY = h * 0.665;
    const mouthW = w * (0.075 + 0.025 * this.openness);
    const mouthH = h * 0.065 * this.openness;
    g.fillStyle = MOUTH_COLOR;
    g.strokeStyle = MOUTH_COLOR;
    if (mouthH < 1.5) {
      g.lineWidth = 4;
      g.lineCap = "round";
      g.beginPath();
      g.moveTo(cx - mouthW, mouthY);
      g.quadraticCurveTo(cx, mouthY + h * 0.012, cx + mouthW, mouthY);
      g.stroke();
    } else {
      g.beginPath();
      g.ellipse(cx, mouthY, mouthW, mouthH, 0, 0, Math.PI * 2);
      g.fill();
    }
  }
}
