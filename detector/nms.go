package detector

import "sort"

// NMS keeps the highest-scoring detections and drops any that overlap an already kept one by more
// than iouThreshold (greedy non-maximum suppression). The result is sorted by descending score;
// ties keep their input order so results are deterministic. detections is reordered in place.
func NMS(detections []Detection, iouThreshold float32) []Detection {
	sort.SliceStable(detections, func(i, j int) bool { return detections[i].Score > detections[j].Score })
	kept := detections[:0:0]
	for _, candidate := range detections {
		suppressed := false
		for _, winner := range kept {
			if IoU(candidate.Box, winner.Box) > iouThreshold {
				suppressed = true
				break
			}
		}
		if !suppressed {
			kept = append(kept, candidate)
		}
	}
	return kept
}
