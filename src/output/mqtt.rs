//! The MQTT output: one connection to the configured broker, publishes acknowledged.
//!
//! rumqttc drives the connection (reconnecting after a pause when it drops). A publish
//! counts as delivered when the client has written it (QoS 0) or the broker has acknowledged
//! it (QoS 1); waiting is bounded by `timeout_ms`. Publishes go out in the order they were
//! handed over, which is how each one is matched to its packet id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::oneshot;

use super::MqttSettings;

/// Why a message was not delivered to the broker.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt: no broker is configured ([outputs.mqtt])")]
    NotConfigured,
    #[error("mqtt: QoS {0} is not supported (use 0 or 1)")]
    Qos(u8),
    /// The client refused the publish (its request queue is closed).
    #[error("mqtt: cannot publish to {topic}: {source}")]
    Publish { topic: String, source: rumqttc::ClientError },
    #[error("mqtt: the connection to {broker} dropped before {topic} was acknowledged")]
    Dropped { broker: String, topic: String },
    #[error("mqtt: broker {broker} did not take {topic} within {ms} ms")]
    Timeout { broker: String, topic: String, ms: u128 },
}

#[derive(Default)]
struct Waiters {
    /// Handed to the client, not yet written: in order.
    queued: VecDeque<oneshot::Sender<()>>,
    /// Written with QoS 1, waiting for the broker's PUBACK.
    by_packet: HashMap<u16, oneshot::Sender<()>>,
}

pub struct Mqtt {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    order: tokio::sync::Mutex<()>,
    timeout: Duration,
    broker: String,
}

impl Mqtt {
    /// Starts the connection task (it connects in the background and keeps reconnecting).
    pub fn start(settings: &MqttSettings) -> Self {
        let mut options = MqttOptions::new(settings.client_id.clone(), settings.host.clone(), settings.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some(user) = &settings.username {
            let password = settings.password.as_ref().map(|p| p.0.clone()).unwrap_or_default();
            options.set_credentials(user.clone(), password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let waiters: Arc<Mutex<Waiters>> = Arc::default();
        let broker = format!("{}:{}", settings.host, settings.port);
        let task_waiters = waiters.clone();
        let task_broker = broker.clone();
        tokio::spawn(async move {
            let mut down = false;
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if down {
                            tracing::info!(broker = %task_broker, "mqtt: connected again");
                            down = false;
                        }
                        let mut w = task_waiters.lock().unwrap_or_else(|e| e.into_inner());
                        match event {
                            Event::Outgoing(Outgoing::Publish(0)) => {
                                if let Some(tx) = w.queued.pop_front() {
                                    let _ = tx.send(());
                                }
                            }
                            Event::Outgoing(Outgoing::Publish(pkid)) => {
                                // A packet id seen before is a retransmission: already matched.
                                if !w.by_packet.contains_key(&pkid)
                                    && let Some(tx) = w.queued.pop_front()
                                {
                                    w.by_packet.insert(pkid, tx);
                                }
                            }
                            Event::Incoming(Packet::PubAck(ack)) => {
                                if let Some(tx) = w.by_packet.remove(&ack.pkid) {
                                    let _ = tx.send(());
                                }
                            }
                            _ => {}
                        }
                    }
                    Err(e) => {
                        if !down {
                            tracing::warn!(broker = %task_broker, error = %e, "mqtt: connection lost; retrying every second");
                            down = true;
                        }
                        task_waiters.lock().unwrap_or_else(|e| e.into_inner()).by_packet.clear();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Self {
            client,
            waiters,
            order: tokio::sync::Mutex::new(()),
            timeout: Duration::from_millis(settings.timeout_ms.max(1)),
            broker,
        }
    }

    /// Publishes and waits until it is written (QoS 0) or acknowledged (QoS 1).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, qos: u8, retain: bool) -> Result<(), MqttError> {
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            other => return Err(MqttError::Qos(other)),
        };
        let done = async {
            let rx = {
                let _order = self.order.lock().await;
                let (tx, rx) = oneshot::channel();
                self.waiters.lock().unwrap_or_else(|e| e.into_inner()).queued.push_back(tx);
                if let Err(source) = self.client.publish(topic, qos, retain, payload).await {
                    self.waiters.lock().unwrap_or_else(|e| e.into_inner()).queued.pop_back();
                    return Err(MqttError::Publish { topic: topic.to_owned(), source });
                }
                rx
            };
            rx.await.map_err(|_| MqttError::Dropped { broker: self.broker.clone(), topic: topic.to_owned() })
        };
        match tokio::time::timeout(self.timeout, done).await {
            Ok(result) => result,
            Err(_) => Err(MqttError::Timeout {
                broker: self.broker.clone(),
                topic: topic.to_owned(),
                ms: self.timeout.as_millis(),
            }),
        }
    }
}
