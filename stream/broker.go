package stream

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BrokerOptions configures the embedded broker.
type BrokerOptions struct {
	// Addr is the host:port to listen on, normally loopback (config stream.embedded_addr,
	// default 127.0.0.1:9092). Port 0 picks a free port; Addrs reports it.
	Addr string
	// DataDir keeps topics, records and committed offsets across restarts
	// (<data_dir>/broker). Empty keeps everything in memory.
	DataDir string
	// SyncWrites fsyncs every produced batch before the broker acknowledges it, so an acknowledged
	// crop survives a power loss, not only a crash of the process (whose writes the kernel keeps).
	SyncWrites bool
	// MaxMessageBytes is the broker's message.max.bytes; 0 keeps kfake's default (about 1 MiB),
	// which fits every record Encode accepts (MaxRecordBytes).
	MaxMessageBytes int
	// RetentionCheck is how often records past their topic's retention.ms are deleted; 0 means
	// every 5 minutes (Kafka's log.retention.check.interval.ms).
	RetentionCheck time.Duration
	// SegmentBytes is the size at which a partition starts a new log file (log.segment.bytes);
	// 0 keeps kfake's 100 MiB. kfake rolls on size alone, never on time (segment.ms), and a purge
	// (purge.go) frees only whole files, so this bounds what a purge leaves on disk, unreadable.
	SegmentBytes int

	// Logger receives the broker's warnings and errors; nil uses slog.Default.
	Logger *slog.Logger
}

// Broker is an in-process, single-node Kafka-protocol broker (franz-go's kfake). Standard Kafka
// clients and tools reach it at Addrs, so the same kafka-go code runs against it as against a real
// cluster.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string
}

// StartBroker starts the broker; it serves until Close.
func StartBroker(options BrokerOptions) (*Broker, error) {
	if options.Addr == "" {
		options.Addr = "127.0.0.1:9092"
	}
	host, port, err := net.SplitHostPort(options.Addr)
	if err != nil {
		return nil, fmt.Errorf("stream: embedded broker address %q: %w", options.Addr, err)
	}
	portNumber, err := strconv.Atoi(port)
	if err != nil || portNumber < 0 || portNumber > 65535 {
		return nil, fmt.Errorf("stream: embedded broker address %q: bad port", options.Addr)
	}
	logger := options.Logger
	if logger == nil {
		logger = slog.Default()
	}
	kfakeOptions := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("reid-embedded"),
		// kfake always listens on 127.0.0.1; ListenFn lets the configured host be used instead.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, port))
		}),
		kfake.WithLogger(kfakeLogger{logger: logger.With("component", "broker")}),
	}
	if options.DataDir != "" {
		if err := os.MkdirAll(options.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("stream: embedded broker: %w", err)
		}
		kfakeOptions = append(kfakeOptions, kfake.DataDir(options.DataDir))
		if options.SyncWrites {
			kfakeOptions = append(kfakeOptions, kfake.SyncWrites())
		}
	}
	if options.RetentionCheck <= 0 {
		options.RetentionCheck = 5 * time.Minute
	}
	// kfake enforces topics' retention.ms on its cleaner's schedule; without it a broker that runs
	// for months would keep every crop it was ever sent.
	brokerConfigs := map[string]string{"log.cleaner.backoff.ms": strconv.FormatInt(options.RetentionCheck.Milliseconds(), 10)}
	if options.MaxMessageBytes > 0 {
		brokerConfigs["message.max.bytes"] = strconv.Itoa(options.MaxMessageBytes)
	}
	if options.SegmentBytes > 0 {
		brokerConfigs["log.segment.bytes"] = strconv.Itoa(options.SegmentBytes)
	}
	kfakeOptions = append(kfakeOptions, kfake.BrokerConfigs(brokerConfigs))
	cluster, err := kfake.NewCluster(kfakeOptions...)
	if err != nil {
		return nil, fmt.Errorf("stream: embedded broker on %s: %w", options.Addr, err)
	}
	return &Broker{cluster: cluster, addrs: cluster.ListenAddrs()}, nil
}

// Addrs are the host:port addresses clients bootstrap from.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Close stops the broker and, with a DataDir, flushes its state to disk.
func (b *Broker) Close() { b.cluster.Close() }

// kfakeLogger forwards kfake's warnings and errors to slog; its info/debug output is per request
// and too chatty for an always-on broker.
type kfakeLogger struct{ logger *slog.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.logger.Error(fmt.Sprintf(format, args...))
	case kfake.LogLevelWarn:
		l.logger.Warn(fmt.Sprintf(format, args...))
	}
}
