package track

import (
	"math"

	"github.com/reid-project/reid/detector"
)

// kalman is SORT's constant-velocity filter over the state [centre x, centre y, area, aspect
// (width/height), and the velocities of the first three]; the aspect is assumed constant.
type kalman struct {
	state      [7]float64
	covariance [7][7]float64
}

// Noise settings from SORT (Bewley et al. 2016): a new track is certain of its box but not of its
// velocity, and area is noisier to measure than position.
var (
	measurementNoise = [4]float64{1, 1, 10, 10}
	processNoise     = [7]float64{1, 1, 1, 1, 0.01, 0.01, 0.0001}
	initialVariance  = [7]float64{10, 10, 10, 10, 10000, 10000, 10000}
)

func toMeasurement(box detector.Box) [4]float64 {
	width, height := float64(box.Width()), float64(box.Height())
	return [4]float64{
		float64(box.X1) + width/2,
		float64(box.Y1) + height/2,
		width * height,
		width / math.Max(height, 1e-6),
	}
}

func newKalman(box detector.Box) *kalman {
	filter := &kalman{}
	measurement := toMeasurement(box)
	copy(filter.state[:4], measurement[:])
	for i, variance := range initialVariance {
		filter.covariance[i][i] = variance
	}
	return filter
}

// box is the current state as a rectangle; zero when the state has degenerated.
func (k *kalman) box() detector.Box {
	area, aspect := k.state[2], k.state[3]
	if area <= 0 || aspect <= 0 || math.IsNaN(area) || math.IsNaN(aspect) {
		return detector.Box{}
	}
	width := math.Sqrt(area * aspect)
	height := area / width
	return detector.Box{
		X1: float32(k.state[0] - width/2), Y1: float32(k.state[1] - height/2),
		X2: float32(k.state[0] + width/2), Y2: float32(k.state[1] + height/2),
	}
}

// predict advances the state one frame: x = F x, P = F P F' + Q, where F adds each velocity to its
// quantity.
func (k *kalman) predict() {
	if k.state[2]+k.state[6] <= 0 {
		k.state[6] = 0 // a shrinking box must not reach negative area
	}
	for i := range 3 {
		k.state[i] += k.state[i+4]
	}
	var fp [7][7]float64 // F P: row i gains row i+4 for i < 3
	for i := range 7 {
		fp[i] = k.covariance[i]
		if i < 3 {
			for j := range 7 {
				fp[i][j] += k.covariance[i+4][j]
			}
		}
	}
	for i := range 7 { // (F P) F': column j gains column j+4 for j < 3
		for j := range 7 {
			value := fp[i][j]
			if j < 3 {
				value += fp[i][j+4]
			}
			k.covariance[i][j] = value
		}
		k.covariance[i][i] += processNoise[i]
	}
}

// update corrects the state with a measured box. H picks the first four state entries, so
// S = P[:4,:4] + R and K = P[:, :4] S^-1.
func (k *kalman) update(box detector.Box) {
	measurement := toMeasurement(box)
	var innovation [4]float64
	var s [4][4]float64
	for i := range 4 {
		innovation[i] = measurement[i] - k.state[i]
		for j := range 4 {
			s[i][j] = k.covariance[i][j]
		}
		s[i][i] += measurementNoise[i]
	}
	sInverse, ok := invert4(s)
	if !ok {
		return
	}
	var gain [7][4]float64
	for i := range 7 {
		for j := range 4 {
			for l := range 4 {
				gain[i][j] += k.covariance[i][l] * sInverse[l][j]
			}
		}
	}
	for i := range 7 {
		for j := range 4 {
			k.state[i] += gain[i][j] * innovation[j]
		}
	}
	// P = (I - K H) P = P - K P[:4, :]
	var updated [7][7]float64
	for i := range 7 {
		for j := range 7 {
			value := k.covariance[i][j]
			for l := range 4 {
				value -= gain[i][l] * k.covariance[l][j]
			}
			updated[i][j] = value
		}
	}
	k.covariance = updated
}

// invert4 inverts a 4x4 matrix by Gauss-Jordan elimination with partial pivoting.
func invert4(m [4][4]float64) ([4][4]float64, bool) {
	var inverse [4][4]float64
	for i := range 4 {
		inverse[i][i] = 1
	}
	for column := range 4 {
		pivot := column
		for row := column + 1; row < 4; row++ {
			if math.Abs(m[row][column]) > math.Abs(m[pivot][column]) {
				pivot = row
			}
		}
		if math.Abs(m[pivot][column]) < 1e-12 {
			return inverse, false
		}
		m[column], m[pivot] = m[pivot], m[column]
		inverse[column], inverse[pivot] = inverse[pivot], inverse[column]
		scale := 1 / m[column][column]
		for j := range 4 {
			m[column][j] *= scale
			inverse[column][j] *= scale
		}
		for row := range 4 {
			if row == column {
				continue
			}
			factor := m[row][column]
			for j := range 4 {
				m[row][j] -= factor * m[column][j]
				inverse[row][j] -= factor * inverse[column][j]
			}
		}
	}
	return inverse, true
}
