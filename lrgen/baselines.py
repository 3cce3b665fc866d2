r"""The classical in-between frames lrgen is compared with: nearest, blend and optical flow.

Each baseline sees only the observed frames' pixels x_{τ_j} (in [0, 1]) at times τ_0 < … <
τ_{n−1} and fills query times t; with τ_j ≤ t ≤ τ_{j+1} and w = (t − τ_j)/(τ_{j+1} − τ_j):

    nearest:  the observed frame nearest in time (ties go to the earlier one)
    blend:    (1 − w) x_{τ_j} + w x_{τ_{j+1}}
    flow:     the two neighbours carried to time t along their optical flow, then blended
              (:func:`flow_frames`)

Frames after the last observed one (and before the first) hold the end frame (blend, flow).
:func:`extrapolated_flow_frames` is flow that carries the end frames on at constant velocity
instead: not a baseline (the issue's flow baseline holds them), but what lrgen mixes with its
generated frames beyond the observed span (:mod:`lrgen.selection`).
"""

from __future__ import annotations

import math

import numpy as np

from lrgen.latent_paths import segments

# Frames smaller than this (pixels, shorter side) are upsampled before optical flow.
FLOW_MIN_SIZE = 128


def nearest_frames(frames: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The observed frame nearest in time to each query time (ties: the earlier frame)."""
    times = np.asarray(times, np.float64)
    d = np.abs(np.asarray(query, np.float64)[:, None] - times[None, :])
    return frames[np.argmin(d, axis=1)]  # argmin returns the first (earlier) of equal distances


def blend_frames(frames: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(1 − w) x_{τ_j} + w x_{τ_{j+1}} between the neighbouring observed frames; held at the ends."""
    times = np.asarray(times, np.float64)
    q = np.clip(np.asarray(query, np.float64), times[0], times[-1])
    if len(times) == 1:
        return np.repeat(frames[:1], len(q), axis=0)
    j, w = segments(times, q)
    w = w.astype(np.float32).reshape(-1, *([1] * (frames.ndim - 1)))
    return (1.0 - w) * frames[j] + w * frames[j + 1]


def _gray_u8(frame: np.ndarray) -> np.ndarray:
    """A frame (H, W, C) in [0, 1] as 8-bit luma (ITU-R BT.601 weights for colour), for flow."""
    f = np.asarray(frame, np.float32)
    g = f[..., 0] if f.shape[-1] == 1 else f[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.round(np.clip(g, 0.0, 1.0) * 255.0).astype(np.uint8)


def optical_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow F (H, W, 2) from frame ``a`` to frame ``b`` (H, W, C) in [0, 1]: a pixel at p in
    ``a`` is at p + F(p) in ``b``; F[..., 0] is the horizontal component.

    OpenCV's DIS flow (Kroeger et al., 2016, "Fast optical flow using dense inverse search"),
    preset MEDIUM (coarse-to-fine patch search with variational refinement), on 8-bit luma.
    DIS matches 12-pixel patches over an image pyramid, which small frames cannot hold: frames
    under ``FLOW_MIN_SIZE`` pixels are upsampled by the smallest integer factor that reaches it
    (bilinear), and the flow is scaled back (area average, divided by the factor). On the 64×64
    sequences of BUILD_NOTES this is the stronger baseline (e.g. two digits, every 8th frame
    observed: 17.5 dB against 16.2 dB at the native size, and better than Farnebäck's flow).
    """
    import cv2  # opencv-python-headless; imported here so that the rest of lrgen does not need it

    ga, gb = _gray_u8(a), _gray_u8(b)
    H, W = ga.shape
    up = max(1, math.ceil(FLOW_MIN_SIZE / min(H, W)))
    if up > 1:
        ga = cv2.resize(ga, (W * up, H * up), interpolation=cv2.INTER_LINEAR)
        gb = cv2.resize(gb, (W * up, H * up), interpolation=cv2.INTER_LINEAR)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(ga, gb, None)
    if up > 1:
        flow = cv2.resize(flow, (W, H), interpolation=cv2.INTER_AREA) / np.float32(up)
    return flow


def warp(frame: np.ndarray, flow: np.ndarray, scale: float) -> np.ndarray:
    """Backward warp: out(p) = frame(p + scale · flow(p)), bilinear, edges replicated."""
    import cv2

    H, W = frame.shape[:2]
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    mx = gx + np.float32(scale) * flow[..., 0]
    my = gy + np.float32(scale) * flow[..., 1]
    out = cv2.remap(np.ascontiguousarray(frame, np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(frame.shape)


def flow_frames(frames: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    r"""Motion-compensated interpolation between the neighbouring observed frames; held at the ends.

    For t in [τ_j, τ_{j+1}] with w = (t − τ_j)/(τ_{j+1} − τ_j), flows F_{j→j+1} and F_{j+1→j}
    between the two observed frames (:func:`optical_flow`) carry each of them to time t, and the
    two warped frames are blended by temporal distance:

        x̂(t)(p) = (1 − w) · x_{τ_j}(p − w F_{j→j+1}(p)) + w · x_{τ_{j+1}}(p − (1 − w) F_{j+1→j}(p))

    (backward warping with the flow read at p itself, the usual first-order approximation of
    the flow at time t). This is the classical flow-based frame interpolation a user would reach
    for (e.g. Baker et al., 2011, the Middlebury interpolation baseline, without occlusion
    reasoning). Frames outside [τ_0, τ_{n−1}] hold the end frames, as in :func:`blend_frames`.

    Args:
      frames: (n, H, W, C) observed frames in [0, 1] at ``times``.
      times: (n,) strictly increasing observed times.
      query: (m,) times to fill.

    Returns:
      (m, H, W, C) float32 frames; exactly the observed frame at t = τ_j.
    """
    frames = np.asarray(frames, np.float32)
    times = np.asarray(times, np.float64)
    q = np.clip(np.asarray(query, np.float64), times[0], times[-1])
    if len(times) == 1:
        return np.repeat(frames[:1], len(q), axis=0)
    j, w = segments(times, q)
    flows: dict = {}
    out = np.empty((len(q), *frames.shape[1:]), np.float32)
    for i, (jj, ww) in enumerate(zip(j, w)):
        if ww <= 0.0 or ww >= 1.0:
            out[i] = frames[jj] if ww <= 0.0 else frames[jj + 1]
            continue
        if jj not in flows:
            flows[jj] = (optical_flow(frames[jj], frames[jj + 1]), optical_flow(frames[jj + 1], frames[jj]))
        fwd, bwd = flows[jj]
        a = warp(frames[jj], fwd, -ww)
        b = warp(frames[jj + 1], bwd, -(1.0 - ww))
        out[i] = np.clip((1.0 - ww) * a + ww * b, 0.0, 1.0)
    return out


def extrapolated_flow_frames(frames: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    r""":func:`flow_frames` between the observed frames; beyond them the end frame moves on at the
    velocity of the end segment.

    For t > τ_{n−1}, with d = (t − τ_{n−1}) / (τ_{n−1} − τ_{n−2}) and F the flow from x_{τ_{n−1}} to
    x_{τ_{n−2}} (where each pixel was one segment earlier),

        x̂(t)(p) = x_{τ_{n−1}}(p + d F(p)),

    i.e. the motion of the last segment continued backward-warped (first order, as in
    :func:`flow_frames`); before τ_0 the same with x_{τ_0} and the flow to x_{τ_1}. One observed
    frame: it is held.
    """
    frames = np.asarray(frames, np.float32)
    times = np.asarray(times, np.float64)
    query = np.asarray(query, np.float64)
    out = flow_frames(frames, times, query)
    if len(times) < 2:
        return out
    ends = {}
    for i, t in enumerate(query):
        if times[0] <= t <= times[-1]:
            continue
        e, o = (len(times) - 1, len(times) - 2) if t > times[-1] else (0, 1)
        if e not in ends:
            ends[e] = optical_flow(frames[e], frames[o])
        d = abs(t - times[e]) / abs(times[e] - times[o])
        out[i] = np.clip(warp(frames[e], ends[e], d), 0.0, 1.0)
    return out


# (observed frames, their times, query times) → frames, in the order reports list them.
BASELINES = {"nearest": nearest_frames, "blend": blend_frames, "flow": flow_frames}
