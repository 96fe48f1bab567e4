package track

import "math"

// Assign solves the rectangular assignment problem: it pairs rows with columns so that the total
// cost of the pairs is smallest, every row or every column (whichever are fewer) being paired
// exactly once. It returns, for each row, its column or -1. cost must be rectangular.
//
// This is the O(n^2 m) Hungarian algorithm with row and column potentials (Kuhn-Munkres in the
// shortest-augmenting-path form): each row is added in turn and the cheapest alternating path to
// a free column, under reduced costs, is followed back to re-pair the rows on it.
func Assign(cost [][]float64) []int {
	rows := len(cost)
	if rows == 0 {
		return nil
	}
	columns := len(cost[0])
	if columns == 0 {
		return filled(rows, -1)
	}
	if rows > columns {
		// Solve the transpose so that rows <= columns, then invert the pairing.
		transposed := make([][]float64, columns)
		for j := range transposed {
			transposed[j] = make([]float64, rows)
			for i := range rows {
				transposed[j][i] = cost[i][j]
			}
		}
		result := filled(rows, -1)
		for j, i := range Assign(transposed) {
			if i >= 0 {
				result[i] = j
			}
		}
		return result
	}
	// 1-based arrays: index 0 is the virtual column where each augmenting path starts.
	rowPotential := make([]float64, rows+1)
	columnPotential := make([]float64, columns+1)
	columnRow := make([]int, columns+1) // row paired with each column, 0 = free
	previous := make([]int, columns+1)  // the column before each on the current path
	minSlack := make([]float64, columns+1)
	visited := make([]bool, columns+1)
	for row := 1; row <= rows; row++ {
		columnRow[0] = row
		column := 0
		for j := range minSlack {
			minSlack[j] = math.Inf(1)
			visited[j] = false
		}
		for {
			visited[column] = true
			current := columnRow[column]
			delta := math.Inf(1)
			next := 0
			for j := 1; j <= columns; j++ {
				if visited[j] {
					continue
				}
				slack := cost[current-1][j-1] - rowPotential[current] - columnPotential[j]
				if slack < minSlack[j] {
					minSlack[j] = slack
					previous[j] = column
				}
				if minSlack[j] < delta {
					delta = minSlack[j]
					next = j
				}
			}
			for j := 0; j <= columns; j++ {
				if visited[j] {
					rowPotential[columnRow[j]] += delta
					columnPotential[j] -= delta
				} else {
					minSlack[j] -= delta
				}
			}
			column = next
			if columnRow[column] == 0 {
				break
			}
		}
		for column != 0 {
			before := previous[column]
			columnRow[column] = columnRow[before]
			column = before
		}
	}
	result := filled(rows, -1)
	for j := 1; j <= columns; j++ {
		if columnRow[j] != 0 {
			result[columnRow[j]-1] = j - 1
		}
	}
	return result
}

func filled(n, value int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = value
	}
	return s
}
