//! Audio that travels beside the frames: a live source (an RTSP camera) publishes its
//! encoded audio packets per stream, and a recording sink subscribes to copy them into its
//! file. The packets never enter the frame queues, so dropping a late frame never cuts the
//! sound, and a sink that falls behind loses packets (counted), never stalls the source.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

/// Packets a subscriber may have waiting before newer ones are dropped (about 20 s of AAC).
const BACKLOG: usize = 1024;

/// Packets kept for a subscriber that comes late (a sink opens on its first frame, which
/// reaches it after inference): about 5 s of AAC.
const REPLAY: usize = 256;

/// One encoded audio packet, on the frames' timeline.
#[derive(Clone, Debug)]
pub struct AudioPacket {
    pub pts: Duration,
    pub duration: Option<Duration>,
    pub data: std::sync::Arc<[u8]>,
}

/// What a stream's source knows of its audio.
#[derive(Debug)]
enum Track {
    /// The source is finding out.
    Pending,
    /// No audio (or none it can pass on).
    None,
    /// Audio in this format (GStreamer caps, as text); packets go to every subscriber.
    Some {
        caps: String,
        subscribers: Vec<Sender<AudioPacket>>,
        /// The latest packets, handed to a new subscriber first.
        recent: std::collections::VecDeque<AudioPacket>,
    },
}

/// The audio tracks of a run's streams; see the module documentation.
#[derive(Debug, Default)]
pub struct AudioTracks {
    tracks: Mutex<BTreeMap<u32, Track>>,
    known: Condvar,
    /// Packets no subscriber had room for.
    dropped: std::sync::atomic::AtomicU64,
}

impl AudioTracks {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Track>> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The source of `stream` is looking for its audio: subscribers wait for the answer.
    pub fn expect(&self, stream: u32) {
        self.lock().entry(stream).or_insert(Track::Pending);
    }

    /// The audio of `stream` is in format `caps`, or there is none (`None`). A later call
    /// (a reconnection) keeps the subscribers.
    pub fn announce(&self, stream: u32, caps: Option<String>) {
        let mut tracks = self.lock();
        let track = tracks.entry(stream).or_insert(Track::Pending);
        match (caps, &mut *track) {
            (Some(new), Track::Some { caps, .. }) => *caps = new,
            (Some(caps), t) => {
                *t = Track::Some {
                    caps,
                    subscribers: Vec::new(),
                    recent: Default::default(),
                }
            }
            (None, Track::Pending) => *track = Track::None,
            (None, _) => {}
        }
        self.known.notify_all();
    }

    /// Hands a packet of `stream` to its subscribers.
    pub fn publish(&self, stream: u32, packet: AudioPacket) {
        let mut tracks = self.lock();
        let Some(Track::Some {
            subscribers,
            recent,
            ..
        }) = tracks.get_mut(&stream)
        else {
            return;
        };
        if recent.len() == REPLAY {
            recent.pop_front();
        }
        recent.push_back(packet.clone());
        subscribers.retain(|s| match s.try_send(packet.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    /// The format and the packets of `stream`'s audio (the last few seconds', then every
    /// new one), waiting up to `wait`
    /// while its source is still finding out; `None` when it has none.
    pub fn subscribe(
        &self,
        stream: u32,
        wait: Duration,
    ) -> Option<(String, Receiver<AudioPacket>)> {
        let deadline = Instant::now() + wait;
        let mut tracks = self.lock();
        loop {
            match tracks.get_mut(&stream) {
                Some(Track::Some {
                    caps,
                    subscribers,
                    recent,
                }) => {
                    let (tx, rx) = bounded(BACKLOG);
                    for p in recent.iter() {
                        let _ = tx.try_send(p.clone());
                    }
                    subscribers.push(tx);
                    return Some((caps.clone(), rx));
                }
                Some(Track::Pending) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    tracks = self
                        .known
                        .wait_timeout(tracks, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                Some(Track::None) | None => return None,
            }
        }
    }

    /// Packets dropped because a subscriber was too far behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn packet(ms: u64) -> AudioPacket {
        AudioPacket {
            pts: Duration::from_millis(ms),
            duration: None,
            data: Arc::from(&[1u8, 2][..]),
        }
    }

    #[test]
    fn a_subscriber_waits_for_the_announcement_and_gets_later_packets() {
        let tracks = Arc::new(AudioTracks::default());
        tracks.expect(3);
        tracks.publish(3, packet(0)); // nobody listens yet
        let t = tracks.clone();
        let announcer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            t.announce(3, Some("audio/mpeg".into()));
        });
        let (caps, rx) = tracks.subscribe(3, Duration::from_secs(5)).unwrap();
        announcer.join().unwrap();
        assert_eq!(caps, "audio/mpeg");
        tracks.publish(3, packet(20));
        assert_eq!(rx.try_recv().unwrap().pts, Duration::from_millis(20));
        assert!(rx.try_recv().is_err());
        // A later subscriber gets the recent packets first.
        tracks.publish(3, packet(40));
        let (_, late) = tracks.subscribe(3, Duration::ZERO).unwrap();
        let got: Vec<u128> = late.try_iter().map(|p| p.pts.as_millis()).collect();
        assert_eq!(got, [20, 40]);
    }

    #[test]
    fn no_audio_or_no_source_answers_at_once_and_a_full_subscriber_loses_packets() {
        let tracks = AudioTracks::default();
        assert!(tracks.subscribe(0, Duration::from_secs(5)).is_none());
        tracks.expect(1);
        tracks.announce(1, None);
        assert!(tracks.subscribe(1, Duration::from_secs(5)).is_none());
        tracks.expect(2);
        assert!(tracks.subscribe(2, Duration::from_millis(10)).is_none());
        tracks.announce(2, Some("audio/x-opus".into()));
        let (_, rx) = tracks.subscribe(2, Duration::ZERO).unwrap();
        for i in 0..BACKLOG as u64 + 5 {
            tracks.publish(2, packet(i));
        }
        assert_eq!(rx.len(), BACKLOG);
        assert_eq!(tracks.dropped(), 5);
        drop(rx);
        tracks.publish(2, packet(0));
        assert_eq!(tracks.dropped(), 5, "a gone subscriber is forgotten");
    }
}
