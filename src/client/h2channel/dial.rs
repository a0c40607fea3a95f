//! Opening the byte stream to one endpoint: TCP with `TCP_NODELAY`, then TLS (feature `tls`)
//! with ALPN `h2`. Both kinds of stream are one type, [`Io`], so HTTP/2 is compiled once.

use std::io;
use std::pin::Pin;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Where a channel connects: the URL's parts, and TLS settings for `https://`.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    /// `http` or `https`, for the `:scheme` pseudo-header.
    pub(super) scheme: tonic::codegen::http::uri::Scheme,
    /// `host:port`, for the `:authority` pseudo-header.
    pub(super) authority: tonic::codegen::http::uri::Authority,
    /// The host to resolve (without IPv6 brackets).
    host: String,
    port: u16,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ClientTls>,
}

impl Destination {
    /// Parses `url` (`http://host:port` or `https://host:port`, as `scheme::dial_url` makes
    /// them). `tls` is used for `https://`.
    pub(crate) fn parse(
        url: &str,
        #[cfg(feature = "tls")] tls: Option<crate::tls::ClientTls>,
    ) -> Result<Self, String> {
        let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{url}: no scheme"))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{url}: no host"))?;
        let https = scheme.as_str() == "https";
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        #[cfg(feature = "tls")]
        let tls = match (https, tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls),
            (true, None) => return Err(format!("{url}: no TLS settings")),
        };
        #[cfg(not(feature = "tls"))]
        if https {
            return Err(format!("{url}: https:// needs the `tls` feature"));
        }
        Ok(Destination {
            scheme,
            authority,
            host,
            port,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// True for an `https://` destination.
    pub(super) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Opens TCP to the first resolved address that answers, then TLS when the destination
    /// is `https://`.
    pub(super) async fn dial(&self) -> io::Result<Io> {
        let mut last = None;
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    tcp.set_nodelay(true)?;
                    return self.secure(tcp).await;
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no address found", self.host),
            )
        }))
    }

    #[cfg(feature = "tls")]
    async fn secure(&self, tcp: TcpStream) -> io::Result<Io> {
        let Some(tls) = &self.tls else {
            return Ok(Io::Plain(tcp));
        };
        let name = tls.server_name(&self.host)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config))
            .connect(name, tcp)
            .await?;
        Ok(Io::Tls(Box::new(stream)))
    }

    #[cfg(not(feature = "tls"))]
    async fn secure(&self, tcp: TcpStream) -> io::Result<Io> {
        Ok(Io::Plain(tcp))
    }
}

/// A connection's byte stream: plain TCP or TLS over TCP.
#[derive(Debug)]
pub(super) enum Io {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! each {
    ($self:ident, $io:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Plain($io) => {
                let $io = Pin::new($io);
                $e
            }
            #[cfg(feature = "tls")]
            Io::Tls($io) => {
                let $io = Pin::new(&mut **$io);
                $e
            }
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, io => io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, io => io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, io => io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, io => io.poll_shutdown(cx))
    }
}
