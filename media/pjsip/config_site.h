/* Callgate's PJSIP limits: a gateway carries thousands of calls, not the
 * 32 that the stock build (and the PyPI wheels) allow. DESIGN.md has the
 * measurements behind these figures. */
#define PJSUA_MAX_CALLS              4096
#define PJSUA_MAX_ACC                64
#define PJ_IOQUEUE_MAX_HANDLES       8192
#define PJSUA_MAX_CONF_PORTS         (3 * PJSUA_MAX_CALLS)
#define PJSUA_MAX_PLAYERS            4096
#define PJSUA_MAX_RECORDERS          4096
#define PJSIP_MAX_TSX_COUNT          65535
#define PJSIP_MAX_DIALOG_COUNT       65535
#define PJ_DEBUG                     0
#define PJ_LOG_MAX_LEVEL             5
#define PJMEDIA_HAS_VIDEO            0
#define PJMEDIA_CONF_USE_SWITCH_BOARD 0
/* Media without a sound device: the engine only bridges network legs. */
#define PJMEDIA_AUDIO_DEV_HAS_NULL_AUDIO 1
#define PJMEDIA_AUDIO_DEV_HAS_ALSA   0
#define PJMEDIA_AUDIO_DEV_HAS_PORTAUDIO 0
/* Plain level-triggered epoll, not EPOLLEXCLUSIVE: EXCLUSIVE cannot be changed with
 * EPOLL_CTL_MOD, so pjlib re-armed a socket with DEL + ADD twice per datagram read
 * (4 syscalls instead of 2; the media thread's CPU for 800 held calls went from 64 %
 * to 48 %). EXCLUSIVE only helps several threads polling one ioqueue: the SIP
 * ioqueue has one, the media ioqueue `[engine] media_threads` (default 1). */
#define PJ_IOQUEUE_DEFAULT_EPOLL_FLAGS 0
/* How long an unregistered socket's ioqueue key waits before reuse. pjlib walks the
 * whole list of waiting keys on every registration (each RTP/RTCP socket), and at a
 * few hundred calls/s 500 ms (the default) kept ~1,000 keys in it: 2.7 % of the
 * engine's CPU. 100 ms still outlasts any callback in flight on another thread. */
#define PJ_IOQUEUE_KEY_FREE_DELAY    100
