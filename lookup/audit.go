package lookup

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// AuditRecord is one line of the audit log (JSON): who (a key id, never the key) asked what, from
// where, and how many people-crops they got back. reid audit reads it back.
type AuditRecord struct {
	Time time.Time `json:"time"`
	Key  string    `json:"key"`
	// Scope is the name of a scoped key's scope (lookup.scoped_api_keys): what cameras it saw.
	Scope  string            `json:"scope,omitempty"`
	Remote string            `json:"remote"`
	Method string            `json:"method"`
	Route  string            `json:"route"`
	Status int               `json:"status"`
	Params map[string]any    `json:"params,omitempty"`
	Query  map[string]string `json:"query,omitempty"`
	// Results is how many matches, sightings or crops the response held; -1 when not applicable.
	Results int `json:"results"`
}

// auditLog serialises records to one writer as JSON lines, each synced to disk (when the writer
// is a file) before the request it records is answered.
type auditLog struct {
	mu     sync.Mutex
	writer io.Writer
}

func newAuditLog(writer io.Writer) *auditLog { return &auditLog{writer: writer} }

func (a *auditLog) write(record AuditRecord) error {
	if a.writer == nil {
		return nil
	}
	line, err := json.Marshal(record)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.writer.Write(line); err != nil {
		return err
	}
	if file, ok := a.writer.(interface{ Sync() error }); ok {
		return file.Sync()
	}
	return nil
}
