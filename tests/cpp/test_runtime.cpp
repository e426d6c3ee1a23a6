// The C++ binding against the tiny fixture model.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <unistd.h>

#include "loradock.hpp"

std::string second_tu_version();
loradock::Error second_tu_error();

namespace {

const std::string kRoot = LORADOCK_ROOT;
const std::string kAdapters = kRoot + "/tests/fixtures/tiny/adapters";

loradock::RuntimeOptions options() {
    loradock::RuntimeOptions o;
    o.model = kRoot + "/tests/fixtures/tiny/model";
    o.cache_dir = (std::filesystem::temp_directory_path() / ("loradock-cpptest-" + std::to_string(::getpid()))).string();
    o.threads = 1;
    o.budget_bytes = 64u << 20;
    o.max_context = 256;
    o.store_roots = {kAdapters};
    o.allow_unverified = true;
    return o;
}

loradock::RequestOptions request(const std::string& prompt, uint32_t n) {
    loradock::RequestOptions r;
    r.prompt = prompt;
    r.max_tokens = n;
    r.ignore_eos = true;
    return r;
}

std::string text_of(loradock::Stream& s, loradock::Event* end = nullptr) {
    std::string text;
    for (const auto& e : s) {
        if (e.kind == loradock::Event::Kind::Token) text += e.text;
        else if (end) *end = e;
    }
    return text;
}

}  // namespace

TEST(Binding, VersionAndTwoTranslationUnits) {
    EXPECT_EQ(loradock::version(), LORADOCK_VERSION_STRING);
    EXPECT_EQ(second_tu_version(), loradock::version());
    EXPECT_EQ(second_tu_error().status(), LORADOCK_STATUS_BUSY);
}

TEST(Binding, GeneratesWithAndWithoutAdaptersAndFreesEverything) {
    loradock::Runtime rt(options());
    EXPECT_GE(rt.register_adapter("qv", kAdapters + "/r8_qv"), 1u);
    auto base = rt.submit(request("hello world", 8));
    auto r = request("hello world", 8);
    r.adapters.push_back({"qv", "", "", 1.0f});
    auto with = rt.submit(r);
    loradock::Event end;
    std::string t1 = text_of(base, &end);
    EXPECT_EQ(end.kind, loradock::Event::Kind::Done);
    EXPECT_EQ(end.usage.completion_tokens, 8u);
    std::string t2 = text_of(with);
    EXPECT_FALSE(t1.empty());
    EXPECT_NE(t1, t2);
    EXPECT_TRUE(base.ended());
    for (int i = 0; i < 2000 && rt.stats().adapters_docked != 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto st = rt.stats();
    EXPECT_EQ(st.adapters_docked, 0u);
    EXPECT_LE(st.high_water_bytes, st.budget_bytes);
}

TEST(Binding, ErrorsThrowWithStatusAndMessage) {
    auto bad = options();
    bad.model = "/nonexistent/model";
    try {
        loradock::Runtime rt(bad);
        FAIL() << "expected an error";
    } catch (const loradock::Error& e) {
        EXPECT_EQ(e.status(), LORADOCK_STATUS_IO);
        EXPECT_NE(e.message().find("/nonexistent/model"), std::string::npos);
    }
    loradock::Runtime rt(options());
    try {
        rt.unregister_adapter("ghost");
        FAIL();
    } catch (const loradock::Error& e) {
        EXPECT_EQ(e.status(), LORADOCK_STATUS_UNKNOWN_ADAPTER);
    }
    auto r = request("hi", 4);
    r.adapters.push_back({"ghost", "", "", 1.0f});
    EXPECT_THROW(rt.submit(r), loradock::Error);
    rt.register_adapter("dora", kAdapters + "/refuse_dora");
    r.adapters = {{"dora", "", "", 1.0f}};
    auto s = rt.submit(r);
    loradock::Event end;
    text_of(s, &end);
    EXPECT_EQ(end.kind, loradock::Event::Kind::Error);
    EXPECT_EQ(end.error_status, LORADOCK_STATUS_ADAPTER);
    EXPECT_NE(end.error_message.find("DoRA"), std::string::npos);
}

TEST(Binding, CancelAndMoveOnlyHandles) {
    auto o = options();
    o.stream_buffer = 2;
    loradock::Runtime a(o);
    loradock::Runtime rt(std::move(a));
    auto s = rt.submit(request("hello world", 200));
    auto first = s.next(std::chrono::seconds(30));
    ASSERT_TRUE(first.has_value());
    s.cancel();
    loradock::Stream moved(std::move(s));
    loradock::Event end;
    text_of(moved, &end);
    EXPECT_EQ(end.kind, loradock::Event::Kind::Done);
    EXPECT_EQ(end.finish, LORADOCK_FINISH_CANCELLED);
    static_assert(!std::is_copy_constructible_v<loradock::Stream>);
    static_assert(!std::is_copy_constructible_v<loradock::Runtime>);
}

TEST(Binding, PumpRethrowsCallbackExceptionsOnThisSide) {
    loradock::Runtime rt(options());
    auto s = rt.submit(request("the cat", 30));
    int seen = 0;
    EXPECT_THROW(s.pump(std::chrono::seconds(30),
                        [&](const loradock::Event&) -> bool {
                            if (++seen == 2) throw std::runtime_error("host error");
                            return true;
                        }),
                 std::runtime_error);
    EXPECT_EQ(seen, 2);
    // The stream goes on after the exception.
    bool done = false;
    EXPECT_TRUE(s.pump(std::chrono::seconds(30), [&](const loradock::Event& e) {
        done = e.terminal();
        return true;
    }));
    EXPECT_TRUE(done);
}

TEST(Binding, ManyThreadsShareOneRuntime) {
    loradock::Runtime rt(options());
    rt.register_adapter("qv", kAdapters + "/r8_qv");
    rt.register_adapter("mlp", kAdapters + "/r16_mlp");
    std::atomic<int> done{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++) {
        ts.emplace_back([&, t] {
            for (int i = 0; i < 5; i++) {
                auto r = request(i % 2 ? "hello" : "the cat", 5);
                if ((t + i) % 3) r.adapters.push_back({(t + i) % 3 == 1 ? "qv" : "mlp", "", "", 1.0f});
                auto s = rt.submit(r);
                loradock::Event end;
                text_of(s, &end);
                if (end.kind == loradock::Event::Kind::Done) done++;
            }
        });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(done.load(), 20);
}
