package trainer

import (
	"math/rand/v2"
	"testing"
)

func TestSamplerBatches(t *testing.T) {
	tests := []struct {
		name       string
		labels     []int
		cameras    []string
		identities int
		instances  int
	}{
		{"enough clusters", []int{0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, -1}, []string{"a", "b", "a", "a", "a", "b", "b", "b", "b", "a", "b", "a", "a"}, 2, 3},
		{"fewer clusters than identities", []int{0, 0, 1, 1, -1, -1}, []string{"a", "b", "a", "b", "a", "b"}, 4, 2},
		{"clusters smaller than instances", []int{0, 0, 1, 1, 1}, []string{"a", "a", "a", "a", "a"}, 2, 4},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			s := newSampler(rand.New(rand.NewPCG(1, 2)), test.labels, test.cameras, test.instances)
			clusters := len(s.members)
			drawn := make([]int, clusters)
			for range 60 {
				indices, labels := s.batch(test.identities)
				want := min(test.identities, clusters) * test.instances
				if len(indices) != want || len(labels) != want {
					t.Fatalf("batch of %d indices and %d labels, want %d", len(indices), len(labels), want)
				}
				seen := map[int64]bool{}
				for group := 0; group < len(labels); group += test.instances {
					label := labels[group]
					if seen[label] {
						t.Fatalf("cluster %d twice in one batch: %v", label, labels)
					}
					seen[label] = true
					drawn[label]++
					for i := group; i < group+test.instances; i++ {
						if labels[i] != label || test.labels[indices[i]] != int(label) {
							t.Fatalf("index %d (cluster %d) under label %d", indices[i], test.labels[indices[i]], labels[i])
						}
					}
				}
			}
			for cluster, count := range drawn {
				if count < drawn[0]-1 || count > drawn[0]+1 {
					t.Errorf("clusters drawn unevenly: %v (cluster %d)", drawn, cluster)
				}
			}
		})
	}
}

// A pseudo-identity seen by two cameras is sampled across them: the second crop drawn comes from
// the other camera than the first whenever the cluster has one.
func TestSamplerPrefersOtherCameras(t *testing.T) {
	labels := []int{0, 0, 0, 0, 0, 0}
	cameras := []string{"a", "a", "a", "a", "a", "b"}
	s := newSampler(rand.New(rand.NewPCG(3, 4)), labels, cameras, 2)
	for range 50 {
		indices, _ := s.batch(1)
		if cameras[indices[0]] == cameras[indices[1]] {
			t.Fatalf("both crops from camera %s: %v", cameras[indices[0]], indices)
		}
	}
}
