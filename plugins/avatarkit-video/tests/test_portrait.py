"""A user's portrait as the avatar: the mouth opens with the speech, the eyes blink."""

from __future__ import annotations

import numpy as np

from avatarkit_video.animation import Pose
from avatarkit_video.renderer import VideoRenderer


async def test_portrait_mouth_follows_the_speech(media, options, portrait) -> None:
    renderer = VideoRenderer(
        **options(
            portrait=portrait,
            mouth_box=list(media.MOUTH_BOX),
            eye_boxes=[list(b) for b in media.EYE_BOXES],
            width=160,
            height=200,
            pause=0.6,
        )
    )
    speech = media.speech(1.0)
    await renderer.start()
    await renderer.speak(media.chunks(speech))
    await renderer.close()

    rec = media.read(renderer.files.video)
    assert (rec.width, rec.height) == (160, 200)
    dark = rec.dark_pixels(renderer.avatar.mouth_region())
    fps = media.FPS
    talking = dark[round(0.6 * fps) + 2 : round(1.6 * fps)]
    resting = np.concatenate([dark[: round(0.6 * fps)], dark[round(1.6 * fps) + 5 :]])
    assert talking.min() > 10
    assert resting.max() <= 2


def test_portrait_blinks_and_sways(media, options, portrait) -> None:
    renderer = VideoRenderer(
        **options(
            portrait=portrait,
            mouth_box=list(media.MOUTH_BOX),
            eye_boxes=[list(b) for b in media.EYE_BOXES],
            width=300,
            height=400,
        )
    )
    avatar = renderer.avatar
    still = avatar.draw(Pose())
    x, y, w, h = media.EYE_BOXES[0]
    region = (slice(y, y + h), slice(x, x + w))

    def whites(image: np.ndarray) -> int:  # eye whites visible
        return int(np.count_nonzero(image[region].min(axis=2) > 230))

    assert whites(still) > 50
    assert whites(avatar.draw(Pose(eyes_open=0.0))) == 0
    moved = avatar.draw(Pose(dx=4, dy=4))
    assert np.abs(moved.astype(int) - still.astype(int)).max() > 40
