//! The V2 command handlers, one per wire verb (IDENTIFY, SUB, PUB, MPUB,
//! DPUB, RDY, FIN, REQ, TOUCH, plus the dispatch): each validates against the
//! session's state and limits and calls the broker; none touches the socket.

use super::*;

impl Session {
    /// Runs one command. Responses go to `out`; errors come back.
    pub(super) fn execute(&mut self, cmd: Command) -> Result<Outcome, ProtocolError> {
        // nsqd's enforceTLSPolicy: every command but IDENTIFY needs TLS
        // when it is required.
        if self.env.config.tls_required() != 0
            && self.tls.is_none()
            && !matches!(cmd, Command::Identify(_))
        {
            return Err(ProtocolError::invalid(format!(
                "cannot {} in current state (TLS required)",
                cmd.name()
            )));
        }
        match cmd {
            Command::Nop(_) => Ok(Outcome::Continue),
            Command::Identify(i) => self.identify(&i.data),
            // Answered by `authorize`, which may wait for the auth server.
            Command::Auth(_) => Ok(Outcome::Continue),
            Command::Sub(sub) => self.sub(sub).map(|()| Outcome::Continue),
            Command::Pub(p) => self.publish(p).map(|()| Outcome::Continue),
            Command::Mpub(m) => self.mpub(m).map(|()| Outcome::Continue),
            Command::Dpub(d) => self.dpub(d).map(|()| Outcome::Continue),
            Command::Rdy(r) => self.rdy(r).map(|()| Outcome::Continue),
            Command::Fin(f) => self.fin(f).map(|()| Outcome::Continue),
            Command::Req(r) => self.req(r).map(|()| Outcome::Continue),
            Command::Touch(t) => self.touch(t).map(|()| Outcome::Continue),
            Command::Cls(_) => {
                if self.state != State::Subscribed {
                    return Err(ProtocolError::invalid("cannot CLS in current state"));
                }
                if let Some(c) = self.consumer.as_mut() {
                    c.set_ready(0);
                }
                self.state = State::Closing;
                codec::write_response(&mut self.out, b"CLOSE_WAIT");
                Ok(Outcome::Continue)
            }
        }
    }

    fn identify(&mut self, data: &IdentifyData) -> Result<Outcome, ProtocolError> {
        if self.state != State::Init || self.decompressor.is_some() {
            return Err(ProtocolError::invalid("cannot IDENTIFY in current state"));
        }
        let n = identify::negotiate(data, &self.settings, &self.identify_cfg)?;
        self.settings = n.settings;
        self.next_heartbeat = self
            .settings
            .heartbeat_interval
            .map(|hb| Instant::now() + hb);
        let old = self.client.meta();
        let mut meta = meta_for(&self.settings);
        meta.authed = old.authed;
        meta.auth_identity = old.auth_identity;
        meta.auth_identity_url = old.auth_identity_url;
        meta.client_id = data.client_id.clone().unwrap_or_default();
        meta.hostname = data.hostname.clone().unwrap_or_default();
        meta.user_agent = data.user_agent.clone().unwrap_or_default();
        set_tls_meta(&mut meta, self.tls.as_ref());
        self.client.set_meta(meta);
        debug!(client_id = ?data.client_id, user_agent = ?data.user_agent, "IDENTIFY");
        codec::write_response(&mut self.out, &n.response);
        Ok(if n.tls || n.compression.is_some() {
            Outcome::Upgrade {
                tls: n.tls,
                compression: n.compression,
            }
        } else {
            Outcome::Continue
        })
    }

    fn sub(&mut self, sub: Sub) -> Result<(), ProtocolError> {
        if self.state != State::Init {
            return Err(ProtocolError::invalid("cannot SUB in current state"));
        }
        if self.settings.heartbeat_interval.is_none() {
            return Err(ProtocolError::invalid(
                "cannot SUB with heartbeats disabled",
            ));
        }
        let sub_failed = |e: BrokerError| match e {
            BrokerError::InvalidTopicName(_) => ProtocolError::new(
                ErrorCode::BadTopic,
                format!(
                    "SUB topic name {} is not valid",
                    crate::protocol::v2::error::go_quote(sub.topic.as_bytes())
                ),
            ),
            BrokerError::InvalidChannelName(_) => ProtocolError::new(
                ErrorCode::BadChannel,
                format!(
                    "SUB channel name {} is not valid",
                    crate::protocol::v2::error::go_quote(sub.channel.as_bytes())
                ),
            ),
            BrokerError::TooManyConsumers => ProtocolError::new(
                ErrorCode::TooManyChannelConsumers,
                format!(
                    "channel consumers for {}:{} exceeds limit of {}",
                    sub.topic, sub.channel, self.env.config.max_channel_consumers
                ),
            ),
            other => ProtocolError::new(ErrorCode::SubFailed, format!("SUB failed {other}")),
        };
        let topic = self.env.broker.topic(&sub.topic).map_err(sub_failed)?;
        let channel = topic.channel(&sub.channel).map_err(sub_failed)?;
        let mut consumer = channel.subscribe(self.client.clone()).map_err(sub_failed)?;
        consumer.set_msg_timeout(self.settings.msg_timeout);
        debug!(topic = %sub.topic, channel = %sub.channel, "SUB");
        self.consumer = Some(consumer);
        self.state = State::Subscribed;
        codec::write_response(&mut self.out, b"OK");
        Ok(())
    }

    /// Publishes through `put` to the named topic, reusing the cached topic
    /// when it is the same one, and looking it up again (recreating it, as
    /// nsqd does) if the cached one was deleted meanwhile.
    fn with_topic<T>(
        &mut self,
        name: &str,
        mut put: impl FnMut(&Topic) -> Result<T, BrokerError>,
    ) -> Result<T, BrokerError> {
        if let Some(t) = self.last_topic.as_ref().filter(|t| t.name() == name) {
            match put(t) {
                Err(BrokerError::Exiting) => self.last_topic = None,
                other => return other,
            }
        }
        let topic = self.env.broker.topic(name)?;
        let res = put(&topic);
        self.last_topic = Some(topic);
        res
    }

    fn publish(&mut self, p: Pub) -> Result<(), ProtocolError> {
        self.with_topic(&p.topic, |t| t.publish(p.body.clone()))
            .map_err(|e| ProtocolError::new(ErrorCode::PubFailed, format!("PUB failed {e}")))?;
        self.client.record_publish(&p.topic, 1);
        codec::write_response(&mut self.out, b"OK");
        Ok(())
    }

    fn mpub(&mut self, m: Mpub) -> Result<(), ProtocolError> {
        let count = m.bodies.len() as u64;
        let mut bodies = Some(m.bodies);
        self.with_topic(&m.topic, |t| match bodies.take() {
            Some(b) => {
                // publish_many consumes the batch; keep a cheap copy (the
                // bodies are reference counted) in case of a retry.
                let copy = b.clone();
                let res = t.publish_many(b);
                if matches!(res, Err(BrokerError::Exiting)) {
                    bodies = Some(copy);
                }
                res
            }
            None => Err(BrokerError::Exiting),
        })
        .map_err(|e| ProtocolError::new(ErrorCode::MpubFailed, format!("MPUB failed {e}")))?;
        self.client.record_publish(&m.topic, count);
        codec::write_response(&mut self.out, b"OK");
        Ok(())
    }

    fn dpub(&mut self, d: Dpub) -> Result<(), ProtocolError> {
        let delay = Duration::from_millis(d.delay_ms);
        self.with_topic(&d.topic, |t| {
            if delay.is_zero() {
                t.publish(d.body.clone())
            } else {
                t.publish_deferred(d.body.clone(), delay)
            }
        })
        .map_err(|e| ProtocolError::new(ErrorCode::DpubFailed, format!("DPUB failed {e}")))?;
        self.client.record_publish(&d.topic, 1);
        codec::write_response(&mut self.out, b"OK");
        Ok(())
    }

    fn rdy(&mut self, r: Rdy) -> Result<(), ProtocolError> {
        match self.state {
            State::Closing => {
                debug!("ignoring RDY after CLS");
                return Ok(());
            }
            State::Init => return Err(ProtocolError::invalid("cannot RDY in current state")),
            State::Subscribed => {}
        }
        let max = self.env.config.max_rdy_count;
        if r.count > max {
            // Fatal, as in nsqd: otherwise the client's idea of its RDY
            // would differ from ours. Go prints the count as an int64.
            return Err(ProtocolError::invalid(format!(
                "RDY count {} out of range 0-{max}",
                r.count as i64
            )));
        }
        if let Some(c) = self.consumer.as_mut() {
            c.set_ready(r.count);
        }
        Ok(())
    }

    /// The consumer for FIN/REQ/TOUCH, or nsqd's state error.
    fn consumer_for(&mut self, verb: &str) -> Result<&mut Consumer, ProtocolError> {
        match (self.state, self.consumer.as_mut()) {
            (State::Subscribed | State::Closing, Some(c)) => Ok(c),
            _ => Err(ProtocolError::invalid(format!(
                "cannot {verb} in current state"
            ))),
        }
    }

    fn fin(&mut self, f: Fin) -> Result<(), ProtocolError> {
        self.consumer_for("FIN")?
            .finish(&f.id)
            .map_err(|e| in_flight_error(ErrorCode::FinFailed, "FIN", &f.id, e))
    }

    fn req(&mut self, r: Req) -> Result<(), ProtocolError> {
        let max = self.env.config.max_req_timeout;
        let asked = Duration::from_millis(r.delay_ms);
        let delay = if asked > max {
            debug!(?asked, ?max, "REQ timeout out of range; clamped");
            max
        } else {
            asked
        };
        self.consumer_for("REQ")?
            .requeue(&r.id, delay)
            .map_err(|e| in_flight_error(ErrorCode::ReqFailed, "REQ", &r.id, e))
    }

    fn touch(&mut self, t: Touch) -> Result<(), ProtocolError> {
        self.consumer_for("TOUCH")?
            .touch(&t.id)
            .map_err(|e| in_flight_error(ErrorCode::TouchFailed, "TOUCH", &t.id, e))
    }
}

/// nsqd's `"<VERB> <id> failed <reason>"` for FIN/REQ/TOUCH; non-fatal.
fn in_flight_error(code: ErrorCode, verb: &str, id: &MessageId, e: BrokerError) -> ProtocolError {
    let reason = match e {
        BrokerError::MessageNotInFlight => "ID not in flight".to_string(),
        other => other.to_string(),
    };
    ProtocolError::new(code, format!("{verb} {id} failed {reason}"))
}
