// Package npy reads and writes two-dimensional float32 arrays in NumPy's .npy format (versions
// 1.0, 2.0 and 3.0), the exchange format between `reid features`, `reid cluster`, `reid eval` and
// Python reference scripts.
//
// Only what those tools need is supported: C order, little-endian float32 ("<f4"), shape (N, D)
// or (N,). Reading also accepts "<f8" (converted to float32) because numpy defaults to float64
// and a user's hand-made file is likely to be one.
package npy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Matrix is a row-major N x D float32 array.
type Matrix struct {
	Rows, Cols int
	Data       []float32 // Rows*Cols values, row after row
}

// Row returns row i, sharing memory with m.
func (m Matrix) Row(i int) []float32 { return m.Data[i*m.Cols : (i+1)*m.Cols] }

// RowSlices returns the rows as slices sharing memory with m.
func (m Matrix) RowSlices() [][]float32 {
	rows := make([][]float32, m.Rows)
	for i := range rows {
		rows[i] = m.Row(i)
	}
	return rows
}

// FromRows copies equally long rows into a Matrix.
func FromRows(rows [][]float32) (Matrix, error) {
	if len(rows) == 0 {
		return Matrix{}, nil
	}
	cols := len(rows[0])
	m := Matrix{Rows: len(rows), Cols: cols, Data: make([]float32, 0, len(rows)*cols)}
	for i, row := range rows {
		if len(row) != cols {
			return Matrix{}, fmt.Errorf("npy: row %d has %d values, row 0 has %d", i, len(row), cols)
		}
		m.Data = append(m.Data, row...)
	}
	return m, nil
}

var magic = []byte("\x93NUMPY")

// ErrFormat is wrapped by every error about a malformed or unsupported file.
var ErrFormat = errors.New("npy: unsupported or malformed file")

var (
	descrPattern   = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	fortranPattern = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	shapePattern   = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

// maxHeader bounds the header length so a corrupt length field cannot make us allocate gigabytes.
const maxHeader = 1 << 20

// Read parses one .npy array. A one-dimensional array of length N is returned as N x 1.
func Read(r io.Reader) (Matrix, error) {
	reader := bufio.NewReader(r)
	prefix := make([]byte, 8)
	if _, err := io.ReadFull(reader, prefix); err != nil {
		return Matrix{}, fmt.Errorf("%w: reading magic: %v", ErrFormat, err)
	}
	if string(prefix[:6]) != string(magic) {
		return Matrix{}, fmt.Errorf("%w: not a .npy file (bad magic)", ErrFormat)
	}
	var headerLen int
	switch major := prefix[6]; major {
	case 1:
		var length uint16
		if err := binary.Read(reader, binary.LittleEndian, &length); err != nil {
			return Matrix{}, fmt.Errorf("%w: header length: %v", ErrFormat, err)
		}
		headerLen = int(length)
	case 2, 3:
		var length uint32
		if err := binary.Read(reader, binary.LittleEndian, &length); err != nil {
			return Matrix{}, fmt.Errorf("%w: header length: %v", ErrFormat, err)
		}
		if length > maxHeader {
			return Matrix{}, fmt.Errorf("%w: header length %d", ErrFormat, length)
		}
		headerLen = int(length)
	default:
		return Matrix{}, fmt.Errorf("%w: version %d.%d", ErrFormat, major, prefix[7])
	}
	headerBytes := make([]byte, headerLen)
	if _, err := io.ReadFull(reader, headerBytes); err != nil {
		return Matrix{}, fmt.Errorf("%w: reading header: %v", ErrFormat, err)
	}
	header := string(headerBytes)
	descr := descrPattern.FindStringSubmatch(header)
	fortran := fortranPattern.FindStringSubmatch(header)
	shapeMatch := shapePattern.FindStringSubmatch(header)
	if descr == nil || fortran == nil || shapeMatch == nil {
		return Matrix{}, fmt.Errorf("%w: header %q", ErrFormat, strings.TrimSpace(header))
	}
	if fortran[1] == "True" {
		return Matrix{}, fmt.Errorf("%w: Fortran-order arrays are not supported (save with np.ascontiguousarray)", ErrFormat)
	}
	var shape []int
	for _, field := range strings.Split(shapeMatch[1], ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		n, err := strconv.Atoi(field)
		if err != nil || n < 0 {
			return Matrix{}, fmt.Errorf("%w: shape %q", ErrFormat, shapeMatch[1])
		}
		shape = append(shape, n)
	}
	var rows, cols int
	switch len(shape) {
	case 1:
		rows, cols = shape[0], 1
	case 2:
		rows, cols = shape[0], shape[1]
	default:
		return Matrix{}, fmt.Errorf("%w: shape %v, want (N, D)", ErrFormat, shape)
	}
	if rows > 0 && cols > math.MaxInt32/rows {
		return Matrix{}, fmt.Errorf("%w: shape %v too large", ErrFormat, shape)
	}
	count := rows * cols
	var itemSize int
	var decode func([]byte) float32
	switch descr[1] {
	case "<f4":
		itemSize, decode = 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }
	case "<f8":
		itemSize, decode = 8, func(b []byte) float32 { return float32(math.Float64frombits(binary.LittleEndian.Uint64(b))) }
	default:
		return Matrix{}, fmt.Errorf("%w: dtype %q, want '<f4' (or '<f8')", ErrFormat, descr[1])
	}
	// The data is read a chunk at a time and the matrix grows as it arrives, so a header whose
	// shape promises gigabytes that are not there costs a chunk, not the promised size.
	m := Matrix{Rows: rows, Cols: cols, Data: make([]float32, 0, min(count, readChunk))}
	buffer := make([]byte, itemSize*min(count, readChunk))
	for len(m.Data) < count {
		chunk := buffer[:itemSize*min(count-len(m.Data), readChunk)]
		if _, err := io.ReadFull(reader, chunk); err != nil {
			return Matrix{}, fmt.Errorf("%w: data shorter than shape %v: %v", ErrFormat, shape, err)
		}
		for offset := 0; offset < len(chunk); offset += itemSize {
			m.Data = append(m.Data, decode(chunk[offset:]))
		}
	}
	return m, nil
}

// readChunk is how many values Read decodes at a time.
const readChunk = 1 << 16

// ReadFile reads a .npy file.
func ReadFile(path string) (Matrix, error) {
	file, err := os.Open(path)
	if err != nil {
		return Matrix{}, err
	}
	defer file.Close()
	m, err := Read(file)
	if err != nil {
		return Matrix{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Write writes m as a version 1.0 .npy array of dtype '<f4' and shape (Rows, Cols).
func Write(w io.Writer, m Matrix) error {
	if len(m.Data) != m.Rows*m.Cols {
		return fmt.Errorf("npy: %d values for shape (%d, %d)", len(m.Data), m.Rows, m.Cols)
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", m.Rows, m.Cols)
	// The format pads the header with spaces and a newline so the data starts 64-byte aligned.
	total := len(magic) + 2 + 2 + len(header) + 1
	header += strings.Repeat(" ", (64-total%64)%64) + "\n"
	if len(header) > math.MaxUint16 {
		return fmt.Errorf("npy: header too long")
	}
	buffer := bufio.NewWriter(w)
	buffer.Write(magic)
	buffer.Write([]byte{1, 0})
	binary.Write(buffer, binary.LittleEndian, uint16(len(header)))
	buffer.WriteString(header)
	var word [4]byte
	for _, value := range m.Data {
		binary.LittleEndian.PutUint32(word[:], math.Float32bits(value))
		buffer.Write(word[:])
	}
	return buffer.Flush()
}

// WriteFile writes m to path (created or truncated).
func WriteFile(path string, m Matrix) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(file, m); err != nil {
		file.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return file.Close()
}
