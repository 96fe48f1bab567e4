// Package stream carries CropRecords through Kafka: the versioned wire format (Encode, Decode,
// docs/WIRE.md), topic setup (EnsureTopics), a producer with a bounded, backpressuring buffer
// (Producer, the ingest sink), an at-least-once micro-batch consumer with a dead-letter topic
// (Consumer), and the embedded Kafka-protocol broker for single-machine runs (Broker, Open).
//
// Typical wiring, as `reid run` does it:
//
//	cluster, err := stream.Open(ctx, opts.Stream, opts.DataDir, logger) // embedded broker if no brokers
//	defer cluster.Close()
//	producer, err := stream.NewProducer(cluster.Conn, stream.ProducerOptionsFrom(opts.Stream))
//	defer producer.Close(shutdownCtx) // drains the buffer
//	// ingest calls producer.Put(ctx, record) for every crop
//
//	options := stream.ConsumerOptionsFrom(opts.Stream, opts.Stream.EmbedGroup)
//	options.BatchSize, options.MaxWait, options.ValidateJPEG = opts.Embedder.BatchSize, opts.Embedder.MaxWait, true
//	consumer, err := stream.NewConsumer(cluster.Conn, options, handler)
//	err = consumer.Run(ctx) // until ctx ends; commits a batch only after handler returned nil
//
// Delivery is at-least-once end to end: the producer never drops a record unless DropWhenFull is
// set (and then counts and logs each drop), and the consumer commits an offset only after its
// handler has made the batch durable, so downstream writes must be idempotent by crop id.
package stream
