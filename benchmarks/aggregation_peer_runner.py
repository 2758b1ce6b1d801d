"""Runs Zooniverse's ``shape_reducer_dbscan`` (IoU metric) on boxes; executed by the *peer* venv.

Called by ``benchmarks/aggregation_boxes.py`` as
``benchmarks/.venv-peers/bin/python benchmarks/aggregation_peer_runner.py IN.npz OUT.npz EPS MIN_SAMPLES ESTIMATE``.
IN.npz holds ``subject, user, box (m, 4) [x, y, w, h], seen_subject, seen_user, subjects``. Every
volunteer who saw a subject is one classification (an empty extract if they drew nothing), as the
Caesar reducer receives them. OUT.npz: clusters ``subject, box (c, 4), count`` and ``seconds`` (the
reducer calls only, summed).
"""
import sys
import time

import numpy as np
from panoptes_aggregation.reducers.shape_reducer_dbscan import shape_reducer_dbscan


def main(inp, out, eps, min_samples, estimate):
    d = np.load(inp)
    subject, user, box = d["subject"], d["user"], d["box"]
    seen_s, seen_u = d["seen_subject"], d["seen_user"]
    order = np.argsort(subject, kind="stable")
    subject, user, box = subject[order], user[order], box[order]
    res_s, res_b, res_c = [], [], []
    seconds = 0.0
    for s in d["subjects"].tolist():
        lo, hi = np.searchsorted(subject, s), np.searchsorted(subject, s, side="right")
        viewers = sorted(set(seen_u[seen_s == s].tolist()) | set(user[lo:hi].tolist()))
        extracts = []
        for v in viewers:
            mine = box[lo:hi][user[lo:hi] == v]
            if len(mine) == 0:
                extracts.append({})
            else:
                extracts.append({"frame0": {"T0_tool0_x": mine[:, 0].tolist(), "T0_tool0_y": mine[:, 1].tolist(),
                                            "T0_tool0_width": mine[:, 2].tolist(), "T0_tool0_height": mine[:, 3].tolist()}})
        t = time.perf_counter()
        red = shape_reducer_dbscan(extracts, shape="rectangle", metric_type="IoU", eps=eps,
                                   min_samples=min_samples, estimate_average=estimate, user_id=viewers)
        seconds += time.perf_counter() - t
        f = red.get("frame0", {})
        for i, c in enumerate(f.get("T0_tool0_clusters_count", [])):
            res_s.append(s)
            res_b.append([f["T0_tool0_clusters_x"][i], f["T0_tool0_clusters_y"][i],
                          f["T0_tool0_clusters_width"][i], f["T0_tool0_clusters_height"][i]])
            res_c.append(c)
    np.savez(out, subject=np.asarray(res_s, dtype=np.int64), box=np.asarray(res_b, dtype=float).reshape(-1, 4),
             count=np.asarray(res_c, dtype=np.int64), seconds=seconds)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1")
