package mqtt

import "github.com/segad-edge/segad-edge/mqtt/mqttconfig"

// The mqtt: section's types live in mqttconfig (a leaf the configuration
// imports without the client); these names keep the client's API whole.
type (
	Config         = mqttconfig.Config
	TLSConfig      = mqttconfig.TLSConfig
	Topic          = mqttconfig.Topic
	Topics         = mqttconfig.Topics
	OutboxConfig   = mqttconfig.OutboxConfig
	EmbeddedConfig = mqttconfig.EmbeddedConfig
	User           = mqttconfig.User
	ACLRule        = mqttconfig.ACLRule
	ResolvedTopics = mqttconfig.ResolvedTopics
)

// Embedded is the Config.Broker value that starts the in-process broker.
const Embedded = mqttconfig.Embedded

// Defaults returns the configuration used for keys the YAML leaves out.
func Defaults() Config { return mqttconfig.Defaults() }
