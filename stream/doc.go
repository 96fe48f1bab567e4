// Package stream carries CropRecords through Kafka: the versioned wire format (Encode, Decode),
// topic setup (EnsureTopics), a producer with a bounded, backpressuring buffer (Producer, the
// ingest sink), an at-least-once batch consumer with a dead-letter topic (Consumer), and an
// embedded Kafka-protocol broker for single-machine runs (Broker).
//
// Typical wiring, as `reid run` does it:
//
//	broker, _ := stream.StartBroker(stream.BrokerOptions{Addr: cfg.Stream.EmbeddedAddr, DataDir: dataDir + "/broker"})
//	defer broker.Close()
//	conn := stream.ConnectionFrom(cfg.Stream, broker.Addrs())
//	_ = stream.EnsureTopics(ctx, conn, cfg.Stream)
//	producer, _ := stream.NewProducer(conn, stream.ProducerOptionsFrom(cfg.Stream))
//	defer producer.Close(shutdownCtx)
//	consumer, _ := stream.NewConsumer(conn, stream.ConsumerOptions{Group: cfg.Stream.EmbedGroup, ...}, handler)
//	err := consumer.Run(ctx) // until ctx ends; commits only after handler returned nil
//
// Delivery is at-least-once end to end: the producer never drops a record unless DropWhenFull is
// set (and then counts and logs each drop), and the consumer commits an offset only after its
// handler has made the batch durable, so downstream writes must be idempotent by crop id.
package stream
