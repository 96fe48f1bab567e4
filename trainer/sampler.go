package trainer

import "math/rand/v2"

// sampler draws Cluster Contrast batches: P pseudo-identities with K crops each. Within an
// identity it prefers crops from other cameras than the first one drawn (the reference's
// RandomMultipleGallerySampler), because pulling together views of one person across cameras is
// what cross-camera search needs; an identity with fewer than K crops repeats some.
type sampler struct {
	rng       *rand.Rand
	members   [][]int // cluster -> indices of its examples
	cameras   []string
	instances int
	queue     []int // clusters not yet drawn in this pass, so every cluster is drawn as often
}

func newSampler(rng *rand.Rand, labels []int, cameras []string, instances int) *sampler {
	clusters := 0
	for _, label := range labels {
		clusters = max(clusters, label+1)
	}
	members := make([][]int, clusters)
	for i, label := range labels {
		if label >= 0 {
			members[label] = append(members[label], i)
		}
	}
	return &sampler{rng: rng, members: members, cameras: cameras, instances: instances}
}

// batch returns identities*instances example indices and their cluster labels, grouped by
// identity. Identities are distinct within a batch when there are enough clusters.
func (s *sampler) batch(identities int) (indices []int, labels []int64) {
	identities = min(identities, len(s.members))
	chosen := make(map[int]bool, identities)
	for len(chosen) < identities {
		if len(s.queue) == 0 {
			s.queue = s.rng.Perm(len(s.members))
		}
		cluster := s.queue[len(s.queue)-1]
		s.queue = s.queue[:len(s.queue)-1]
		if chosen[cluster] {
			// Drawn twice across a pass boundary: put it back for the next batch.
			s.queue = append([]int{cluster}, s.queue...)
			continue
		}
		chosen[cluster] = true
		for _, index := range s.instancesOf(cluster) {
			indices = append(indices, index)
			labels = append(labels, int64(cluster))
		}
	}
	return indices, labels
}

// instancesOf draws K crops of one cluster: an anchor, then crops from other cameras, then from
// the anchor's camera, then repeats.
func (s *sampler) instancesOf(cluster int) []int {
	members := s.members[cluster]
	anchor := members[s.rng.IntN(len(members))]
	picked := []int{anchor}
	var otherCamera, sameCamera []int
	for _, index := range members {
		switch {
		case index == anchor:
		case s.cameras[index] != s.cameras[anchor]:
			otherCamera = append(otherCamera, index)
		default:
			sameCamera = append(sameCamera, index)
		}
	}
	s.rng.Shuffle(len(otherCamera), func(i, j int) { otherCamera[i], otherCamera[j] = otherCamera[j], otherCamera[i] })
	s.rng.Shuffle(len(sameCamera), func(i, j int) { sameCamera[i], sameCamera[j] = sameCamera[j], sameCamera[i] })
	for _, pool := range [][]int{otherCamera, sameCamera} {
		for _, index := range pool {
			if len(picked) == s.instances {
				return picked
			}
			picked = append(picked, index)
		}
	}
	for len(picked) < s.instances {
		picked = append(picked, members[s.rng.IntN(len(members))])
	}
	return picked
}
