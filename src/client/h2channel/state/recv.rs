//! The receiving half of the connection state: each frame the server sends, applied.

use super::*;

impl Inner {
    /// Handles one frame read from the server. An error is a connection error: the caller
    /// sends GOAWAY with its code and closes the connection.
    pub(in crate::client::h2channel) fn on_frame(
        &mut self,
        head: Head,
        payload: &[u8],
    ) -> Result<(), (Reason, &'static str)> {
        if self.block.is_some() && head.kind != CONTINUATION {
            return Err((Reason::PROTOCOL_ERROR, "a header block interrupted"));
        }
        match head.kind {
            DATA => self.on_data(head, payload),
            HEADERS => {
                let Some(fragment) = header_fragment(head.kind, head.flags, payload) else {
                    return Err((
                        Reason::PROTOCOL_ERROR,
                        "a HEADERS frame shorter than its padding",
                    ));
                };
                if head.stream == 0 {
                    return Err((Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
                }
                self.block = Some(Block {
                    stream: head.stream,
                    end_stream: head.flags & END_STREAM != 0,
                    bytes: fragment.to_vec(),
                });
                if head.flags & END_HEADERS != 0 {
                    self.end_block()?;
                }
                Ok(())
            }
            CONTINUATION => {
                let Some(block) = &mut self.block else {
                    return Err((Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
                };
                if block.stream != head.stream {
                    return Err((Reason::PROTOCOL_ERROR, "CONTINUATION on another stream"));
                }
                if block.bytes.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err((Reason::PROTOCOL_ERROR, "a header block over 1 MiB"));
                }
                block.bytes.extend_from_slice(payload);
                if head.flags & END_HEADERS != 0 {
                    self.end_block()?;
                }
                Ok(())
            }
            RST_STREAM => {
                let code = u32_payload(payload)
                    .ok_or((Reason::FRAME_SIZE_ERROR, "RST_STREAM of the wrong size"))?;
                if let Some(stream) = self.streams.get_mut(&head.stream) {
                    if stream.recv_end {
                        // The response is complete; only sending stops.
                        stream.send_end = true;
                        stream.queued.clear();
                        stream.queued_len = 0;
                        stream.wake(&mut self.wake);
                    } else {
                        stream.fail(Http2Error::Reset(Reason(code)), &mut self.wake);
                    }
                }
                Ok(())
            }
            SETTINGS => self.on_settings(head, payload),
            PING => {
                if payload.len() != 8 || head.stream != 0 {
                    return Err((Reason::FRAME_SIZE_ERROR, "a PING of the wrong size"));
                }
                if head.flags & ACK != 0 {
                    if payload == KEEP_ALIVE_PING {
                        self.ping_acked = true;
                    }
                } else {
                    if self.owed > MAX_OWED {
                        return Err((
                            Reason::ENHANCE_YOUR_CALM,
                            "the server sends PINGs faster than it reads the answers",
                        ));
                    }
                    Head::write(&mut self.out, 8, PING, ACK, 0);
                    self.out.extend_from_slice(payload);
                    self.owed += 17;
                    self.dirty = true;
                }
                Ok(())
            }
            GOAWAY => {
                let (Some(last), Some(code)) = (
                    payload.get(..4).and_then(u32_payload),
                    payload.get(4..8).and_then(u32_payload),
                ) else {
                    return Err((Reason::FRAME_SIZE_ERROR, "a GOAWAY shorter than 8 bytes"));
                };
                let last = last & MAX_WINDOW;
                let reason = Reason(code);
                let last = self.goaway.map_or(last, |(before, _)| before.min(last));
                self.goaway = Some((last, reason));
                self.draining = true;
                for (&id, stream) in &mut self.streams {
                    if id > last {
                        stream.fail(Http2Error::Refused(reason), &mut self.wake);
                    }
                }
                self.wake.append(&mut self.slot_waiters);
                Ok(())
            }
            WINDOW_UPDATE => {
                let increment = u32_payload(payload)
                    .ok_or((Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size"))?
                    & MAX_WINDOW;
                if head.stream == 0 {
                    if increment == 0 {
                        return Err((Reason::PROTOCOL_ERROR, "a zero connection WINDOW_UPDATE"));
                    }
                    self.conn_send_window += i64::from(increment);
                    if self.conn_send_window > i64::from(MAX_WINDOW) {
                        return Err((Reason::FLOW_CONTROL_ERROR, "connection window overflow"));
                    }
                } else if let Some(stream) = self.streams.get_mut(&head.stream) {
                    stream.send_window += i64::from(increment);
                    if increment == 0 || stream.send_window > i64::from(MAX_WINDOW) {
                        let reason = if increment == 0 {
                            Reason::PROTOCOL_ERROR
                        } else {
                            Reason::FLOW_CONTROL_ERROR
                        };
                        self.reset(head.stream, reason);
                    }
                }
                if !self.sending.is_empty() {
                    self.dirty = true;
                }
                Ok(())
            }
            PUSH_PROMISE => Err((Reason::PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")),
            // PRIORITY, and frame types this client does not know, are ignored.
            PRIORITY_FRAME => Ok(()),
            _ => Ok(()),
        }
    }

    fn on_data(&mut self, head: Head, payload: &[u8]) -> Result<(), (Reason, &'static str)> {
        if head.stream == 0 {
            return Err((Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = payload.len();
        self.conn_recv_window -= len as i64;
        if self.conn_recv_window < 0 {
            return Err((
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        let data = if head.flags & PADDED != 0 {
            let pad = usize::from(*payload.first().unwrap_or(&0));
            payload
                .get(1..len.saturating_sub(pad))
                .filter(|_| len > pad)
                .ok_or((Reason::PROTOCOL_ERROR, "DATA shorter than its padding"))?
        } else {
            payload
        };
        let Some(stream) = self
            .streams
            .get_mut(&head.stream)
            .filter(|s| !s.recv_end && s.error.is_none())
        else {
            // A stream we reset or forgot: its bytes still count on the connection.
            self.release_connection_window(len);
            return Ok(());
        };
        stream.recv_window -= len as i64;
        if stream.recv_window < 0 {
            self.release_connection_window(len);
            self.reset(head.stream, Reason::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        // Padding is handed back at once, with the data when it is read.
        stream.consumed += (len - data.len()) as u32;
        if !data.is_empty() {
            stream.buffered += data.len();
            stream.data.push_back(Bytes::copy_from_slice(data));
        }
        if head.flags & END_STREAM != 0 {
            stream.recv_end = true;
        }
        stream.wake(&mut self.wake);
        let padding = len - data.len();
        if padding > 0 {
            self.release_connection_window(padding);
        }
        Ok(())
    }

    fn on_settings(&mut self, head: Head, payload: &[u8]) -> Result<(), (Reason, &'static str)> {
        if head.stream != 0 {
            return Err((Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if head.flags & ACK != 0 {
            return Ok(());
        }
        if self.owed > MAX_OWED {
            return Err((
                Reason::ENHANCE_YOUR_CALM,
                "the server sends SETTINGS faster than it reads the answers",
            ));
        }
        if !payload.len().is_multiple_of(6) {
            return Err((Reason::FRAME_SIZE_ERROR, "SETTINGS of the wrong size"));
        }
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                http2::SETTINGS_HEADER_TABLE_SIZE => {
                    self.encoder.set_peer_limit(value as usize);
                }
                http2::SETTINGS_MAX_CONCURRENT_STREAMS => {
                    self.peer_max_streams = value as usize;
                    self.wake.append(&mut self.slot_waiters);
                }
                http2::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if value > MAX_WINDOW {
                        return Err((Reason::FLOW_CONTROL_ERROR, "initial window over 2^31-1"));
                    }
                    let delta = i64::from(value) - self.peer_stream_window;
                    self.peer_stream_window = i64::from(value);
                    for stream in self.streams.values_mut() {
                        stream.send_window += delta;
                    }
                }
                http2::SETTINGS_MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err((Reason::PROTOCOL_ERROR, "max frame size out of range"));
                    }
                    self.peer_max_frame = value as usize;
                }
                _ => {}
            }
        }
        Head::write(&mut self.out, 0, SETTINGS, ACK, 0);
        self.owed += 9;
        self.settings_received = true;
        self.dirty = true;
        Ok(())
    }

    /// A complete header block: response headers, or trailers.
    fn end_block(&mut self) -> Result<(), (Reason, &'static str)> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let mut status = None;
        let mut headers = HeaderMap::new();
        let mut malformed = false;
        // Decoded size as RFC 9113 counts it (6.5.2): small blocks can expand a lot through
        // the dynamic table, so the fields kept are bounded too.
        let mut list_size = 0usize;
        // Always decoded, also for a stream we forgot: the table must follow the server's.
        self.decoder
            .decode(&block.bytes, |name, value| {
                list_size += name.len() + value.len() + 32;
                if list_size > MAX_HEADER_LIST {
                    malformed = true;
                } else if name == b":status" {
                    status = StatusCode::from_bytes(value).ok();
                } else if name.first() == Some(&b':') {
                    malformed = true;
                } else {
                    match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                        (Ok(name), Ok(value)) => {
                            headers.append(name, value);
                        }
                        _ => malformed = true,
                    }
                }
            })
            .map_err(|_| {
                (
                    Reason::COMPRESSION_ERROR,
                    "a header block that does not decode",
                )
            })?;
        let id = block.stream;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if stream.recv_end || stream.error.is_some() {
            return Ok(());
        }
        if !stream.got_head {
            match status {
                // Informational answers carry nothing for gRPC.
                Some(code) if code.is_informational() && !block.end_stream => return Ok(()),
                Some(code) if !malformed => {
                    stream.head = Some((code, headers));
                    stream.got_head = true;
                }
                _ => {
                    self.reset(id, Reason::PROTOCOL_ERROR);
                    return Ok(());
                }
            }
        } else if !block.end_stream || status.is_some() || malformed {
            // Trailers must end the stream and carry no pseudo-header.
            self.reset(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        } else {
            stream.trailers = Some(headers);
        }
        if block.end_stream {
            stream.recv_end = true;
        }
        stream.wake(&mut self.wake);
        Ok(())
    }
}

/// A 4-byte big-endian payload.
fn u32_payload(payload: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = payload.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}
