// loradock.hpp: header-only C++17 RAII wrapper over the loradock C ABI (loradock.h).
//
// - Runtime and Stream own their C handles, are move-only, and free them in destructors.
// - Failures throw loradock::Error carrying the status and the message read from the
//   thread-local last error inside the same call.
// - No exception ever crosses a C frame: callbacks given to C catch everything and the
//   exception is rethrown after the C call returns.
// - Thread safety follows the C ABI: a Runtime may be used from many threads at once; a
//   Stream by one reader at a time (cancel() from any thread).
#ifndef LORADOCK_HPP
#define LORADOCK_HPP

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "loradock.h"

namespace loradock {

/// A failed loradock call: its status and message.
class Error : public std::runtime_error {
public:
    Error(loradock_status status, const std::string& message)
        : std::runtime_error(std::string(loradock_status_str(status)) + ": " + message), status_(status), message_(message) {}
    /// The C status.
    loradock_status status() const noexcept { return status_; }
    /// The message alone (what() also names the status).
    const std::string& message() const noexcept { return message_; }

private:
    loradock_status status_;
    std::string message_;
};

namespace detail {
inline std::string last_error() {
    size_t n = 0;
    loradock_last_error_message(nullptr, 0, &n);
    std::string s(n + 1, '\0');
    loradock_last_error_message(s.data(), s.size(), &n);
    s.resize(n);
    return s;
}

inline void check(loradock_status s) {
    if (s != LORADOCK_STATUS_OK) throw Error(s, last_error());
}

inline const char* c_or_null(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

inline std::vector<const char*> c_array(const std::vector<std::string>& v) {
    std::vector<const char*> out;
    out.reserve(v.size());
    for (const auto& s : v) out.push_back(s.c_str());
    return out;
}
}  // namespace detail

/// The library version string.
inline std::string version() { return loradock_version(); }

/// Residency policy of a registered adapter.
enum class Policy : int32_t { Disposable = LORADOCK_POLICY_DISPOSABLE, KeepWarm = LORADOCK_POLICY_KEEP_WARM, Pinned = LORADOCK_POLICY_PINNED };

/// Options of a Runtime; zero values mean the C defaults.
struct RuntimeOptions {
    std::string model;                     ///< HF directory or GGUF file (required).
    std::string cache_dir;                 ///< Store disk cache directory ("" = default).
    uint64_t budget_bytes = 0;             ///< Device budget (0 = default).
    uint32_t threads = 0;                  ///< Compute threads (0 = all cores).
    uint32_t max_seqs = 0;                 ///< Sequences decoding at once (0 = default).
    uint32_t max_context = 0;              ///< Positions per request (0 = default).
    uint32_t stream_buffer = 0;            ///< Events buffered per stream (0 = default).
    std::string kv_type;                   ///< "f32", "f16", "int8", "q4" ("" = f16).
    std::vector<std::string> store_roots;  ///< Directories local sources must be under.
    std::vector<std::string> gateways;     ///< IPFS gateways.
    bool allow_unverified = false;         ///< Accept adapters without a digest.
};

/// One adapter of a request: a registered name, or an inline source (+ digest).
struct AdapterUse {
    std::string name;    ///< Registered name ("" for inline).
    std::string source;  ///< Inline source.
    std::string digest;  ///< Inline digest ("" = unverified).
    float weight = 1.0f; ///< Weight.
};

/// A request. Exactly one of prompt, messages_json, token_ids.
struct RequestOptions {
    std::string prompt;
    std::string messages_json;
    std::vector<uint32_t> token_ids;
    std::vector<AdapterUse> adapters;
    std::string combination;  ///< "" or "cat" = exact sum; "svd", "ties", ...
    uint32_t max_tokens = 128;
    float temperature = 0.0f;
    uint32_t top_k = 0;
    float top_p = 1.0f;
    uint64_t seed = 0;
    std::vector<std::string> stop;
    bool ignore_eos = false;
};

/// One stream event, owning its strings.
struct Event {
    enum class Kind { Token, Done, Error };
    Kind kind = Kind::Token;
    std::string text;                                   ///< Token: the text.
    loradock_finish_reason finish = LORADOCK_FINISH_NONE; ///< Done: why.
    loradock_usage usage{};                             ///< Done: counts and timings.
    loradock_status error_status = LORADOCK_STATUS_OK;  ///< Error: the status.
    std::string error_message;                          ///< Error: the message.

    bool terminal() const noexcept { return kind != Kind::Token; }

    static Event from_c(const loradock_event& e) {
        Event out;
        switch (e.kind) {
            case LORADOCK_EVENT_TOKEN:
                out.kind = Kind::Token;
                out.text.assign(e.text, e.text_len);
                break;
            case LORADOCK_EVENT_DONE:
                out.kind = Kind::Done;
                out.finish = e.finish_reason;
                out.usage = e.usage;
                break;
            default:
                out.kind = Kind::Error;
                out.error_status = e.error_status;
                out.error_message = e.error_message ? e.error_message : "";
                break;
        }
        return out;
    }
};

/// A request's event stream. Move-only; the destructor frees it (cancelling the request if
/// it has not ended).
class Stream {
public:
    explicit Stream(loradock_stream* s) noexcept : s_(s) {}
    Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Stream& operator=(Stream&& o) noexcept {
        if (this != &o) {
            loradock_stream_free(s_);
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    ~Stream() { loradock_stream_free(s_); }

    /// The next event, or nullopt when none came within `timeout` or the stream ended
    /// (see ended()).
    std::optional<Event> next(std::chrono::milliseconds timeout) {
        loradock_event e;
        e.struct_size = sizeof e;
        loradock_status st = loradock_stream_next(s_, static_cast<uint32_t>(timeout.count()), &e);
        if (st == LORADOCK_STATUS_TIMEOUT) return std::nullopt;
        if (st == LORADOCK_STATUS_STREAM_ENDED) {
            ended_ = true;
            return std::nullopt;
        }
        detail::check(st);
        Event ev = Event::from_c(e);
        if (ev.terminal()) ended_ = true;
        return ev;
    }

    /// True once the terminal event was read.
    bool ended() const noexcept { return ended_; }

    /// Ask the request to end (it ends with Done, finish LORADOCK_FINISH_CANCELLED).
    void cancel() { detail::check(loradock_stream_cancel(s_)); }

    /// Deliver events to `f` on this thread until the terminal event or until `f` returns
    /// false. An exception thrown by `f` stops the pump and is rethrown here (it never
    /// crosses the C frame). Returns false when no event came within `timeout`.
    bool pump(std::chrono::milliseconds timeout, const std::function<bool(const Event&)>& f) {
        struct Ctx {
            const std::function<bool(const Event&)>* f;
            std::exception_ptr error;
        } ctx{&f, nullptr};
        auto trampoline = [](const loradock_event* e, void* user) -> int32_t {
            auto* c = static_cast<Ctx*>(user);
            try {
                return (*c->f)(Event::from_c(*e)) ? 0 : 1;
            } catch (...) {
                c->error = std::current_exception();
                return 1;
            }
        };
        loradock_status st = loradock_stream_pump(s_, static_cast<uint32_t>(timeout.count()), trampoline, &ctx);
        if (ctx.error) std::rethrow_exception(ctx.error);
        if (st == LORADOCK_STATUS_TIMEOUT) return false;
        if (st == LORADOCK_STATUS_STREAM_ENDED) {
            ended_ = true;
            return true;
        }
        detail::check(st);
        return true;
    }

    /// Input iterator over the events up to and including the terminal one; each step
    /// waits up to the stream's per-event time-out and throws Error(TIMEOUT) past it.
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = Event;
        using difference_type = std::ptrdiff_t;
        using pointer = const Event*;
        using reference = const Event&;
        iterator() = default;
        explicit iterator(Stream* s) : s_(s) { advance(); }
        reference operator*() const { return *cur_; }
        pointer operator->() const { return &*cur_; }
        iterator& operator++() {
            advance();
            return *this;
        }
        bool operator==(const iterator& o) const { return s_ == o.s_; }
        bool operator!=(const iterator& o) const { return s_ != o.s_; }

    private:
        void advance() {
            if (!s_ || s_->ended()) {
                s_ = nullptr;
                return;
            }
            cur_ = s_->next(s_->event_timeout);
            if (!cur_) {
                if (s_->ended()) {
                    s_ = nullptr;
                    return;
                }
                throw Error(LORADOCK_STATUS_TIMEOUT, "no event within the stream's event_timeout");
            }
        }
        Stream* s_ = nullptr;
        std::optional<Event> cur_;
    };
    iterator begin() { return iterator(this); }
    iterator end() { return iterator(); }

    /// Per-event wait of the range-for iterator.
    std::chrono::milliseconds event_timeout{60000};

private:
    loradock_stream* s_;
    bool ended_ = false;
};

/// A runtime: one base model, adapters fetched and docked on demand. Move-only.
class Runtime {
public:
    explicit Runtime(const RuntimeOptions& o) {
        loradock_runtime_params p;
        detail::check(loradock_runtime_params_default(&p));
        p.model_path = o.model.c_str();
        p.cache_dir = detail::c_or_null(o.cache_dir);
        if (o.budget_bytes) p.budget_bytes = o.budget_bytes;
        p.threads = o.threads;
        if (o.max_seqs) p.max_seqs = o.max_seqs;
        if (o.max_context) p.max_context = o.max_context;
        if (o.stream_buffer) p.stream_buffer = o.stream_buffer;
        p.kv_type = detail::c_or_null(o.kv_type);
        auto roots = detail::c_array(o.store_roots);
        auto gws = detail::c_array(o.gateways);
        p.store_roots = roots.data();
        p.n_store_roots = roots.size();
        p.gateways = gws.data();
        p.n_gateways = gws.size();
        p.allow_unverified = o.allow_unverified;
        detail::check(loradock_runtime_new(&p, &rt_));
    }
    Runtime(Runtime&& o) noexcept : rt_(std::exchange(o.rt_, nullptr)) {}
    Runtime& operator=(Runtime&& o) noexcept {
        if (this != &o) {
            loradock_runtime_free(rt_);
            rt_ = std::exchange(o.rt_, nullptr);
        }
        return *this;
    }
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;
    ~Runtime() { loradock_runtime_free(rt_); }

    /// Register (or re-register) an adapter; returns its generation.
    uint64_t register_adapter(const std::string& name, const std::string& source, const std::string& digest = "",
                              Policy policy = Policy::Disposable) {
        uint64_t g = 0;
        detail::check(loradock_adapter_register(rt_, name.c_str(), source.c_str(), detail::c_or_null(digest),
                                                static_cast<int32_t>(policy), &g));
        return g;
    }

    /// Remove a registered adapter.
    void unregister_adapter(const std::string& name) { detail::check(loradock_adapter_unregister(rt_, name.c_str())); }

    /// Start a request.
    Stream submit(const RequestOptions& o) {
        loradock_request_params p;
        detail::check(loradock_request_params_default(&p));
        p.prompt = detail::c_or_null(o.prompt);
        p.messages_json = detail::c_or_null(o.messages_json);
        p.token_ids = o.token_ids.empty() ? nullptr : o.token_ids.data();
        p.n_token_ids = o.token_ids.size();
        std::vector<loradock_adapter_use> uses;
        for (const auto& a : o.adapters)
            uses.push_back({detail::c_or_null(a.name), detail::c_or_null(a.source), detail::c_or_null(a.digest), a.weight});
        p.adapters = uses.empty() ? nullptr : uses.data();
        p.n_adapters = uses.size();
        p.combination = detail::c_or_null(o.combination);
        p.max_tokens = o.max_tokens;
        p.temperature = o.temperature;
        p.top_k = o.top_k;
        p.top_p = o.top_p;
        p.seed = o.seed;
        auto stops = detail::c_array(o.stop);
        p.stop = stops.empty() ? nullptr : stops.data();
        p.n_stop = stops.size();
        p.ignore_eos = o.ignore_eos;
        loradock_stream* s = nullptr;
        detail::check(loradock_submit(rt_, &p, &s));
        return Stream(s);
    }

    /// A snapshot of counters and the ledger.
    loradock_stats stats() const {
        loradock_stats s{};
        s.struct_size = sizeof s;
        detail::check(loradock_runtime_stats(rt_, &s));
        return s;
    }

    /// The C handle (borrowed).
    loradock_runtime* handle() const noexcept { return rt_; }

private:
    loradock_runtime* rt_ = nullptr;
};

}  // namespace loradock

#endif  // LORADOCK_HPP
