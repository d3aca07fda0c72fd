// Diode frame verifier, version 1 (hw/FRAMES.md): the HDL twin of the Rust reference
// verifier (src/diode/frame.rs). It checks one frame at a time from a byte stream and answers
// ACCEPT or the reason of the first failing check, with the spec's codes and priorities.
//
// Input (AXI-Stream-like): a beat is taken on a rising clock edge when `in_ready` is high and
// `in_valid` or `in_last` is high. `in_valid` says that `in_data` carries a byte; `in_last`
// marks the end of the frame (after this beat's byte, if any). A beat with `in_last` and no
// byte ends the frame without adding one, so a frame of zero bytes is `in_last` alone.
//
// Output: `done` is high for one clock with `reason` (hw/FRAMES.md, "Reason codes"): one clock
// after the frame's last beat for a frame rejected without its hash, and after the SHA-256
// padding and last compressions (under 300 clocks) for the others. `in_ready` rises again one
// clock after `done` for the next frame; it is low from the last beat until then, and
// while the SHA-256 engine's block buffer is full (about one clock per 64 payload bytes).
//
// Nothing is buffered beyond what the checks need: the 32-byte hash from the header, a stack
// of 32 container bits, one previous key of up to 255 bytes per level (8 KiB with one write and
// one synchronous read port, compared byte by byte while the next key streams in and
// overwritten in place), an integer accumulator, and the
// SHA-256 engine (hw/rtl/sha256.v) with its 64-byte block buffer. The byte counter saturates at
// 2^26 - 1, far beyond the largest frame (64 + 2^24 bytes), so longer frames are TRAILING.
`timescale 1ns/1ps
`default_nettype none
module frame_verifier (
    input  wire       clk,
    input  wire       rst,
    input  wire       in_valid,
    input  wire [7:0] in_data,
    input  wire       in_last,
    output wire       in_ready,
    output reg        done,
    output reg  [3:0] reason
);
`include "charclass.vh"

    // Reason codes.
    localparam [3:0] ACCEPT = 4'd0, TRUNCATED = 4'd1, BAD_MAGIC = 4'd2, BAD_VERSION = 4'd3,
                     BAD_TYPE = 4'd4, BAD_FLAGS = 4'd5, BAD_SESSION = 4'd6, BAD_LENGTH = 4'd7,
                     BAD_RESERVED = 4'd8, TRAILING = 4'd9, BAD_UTF8 = 4'd10, BAD_CHAR = 4'd11,
                     NOT_CANONICAL = 4'd12, LIMIT = 4'd13, BAD_JSON = 4'd14, BAD_HASH = 4'd15;

    // Frame phases.
    localparam [1:0] P_RUN = 2'd0, P_END = 2'd1, P_HASH = 2'd2, P_NEXT = 2'd3;

    // Grammar states (src/diode/frame.rs `State`).
    localparam [3:0] J_START = 4'd0, J_OBJ_FIRST = 4'd1, J_OBJ_KEY = 4'd2, J_KEY = 4'd3,
                     J_COLON = 4'd4, J_VALUE = 4'd5, J_ARR_FIRST = 4'd6, J_STR = 4'd7,
                     J_STR_ESC = 4'd8, J_NUM = 4'd9, J_LIT = 4'd10, J_AFTER = 4'd11,
                     J_DONE = 4'd12;

    // Key comparison with the previous key of the level, so far.
    localparam [1:0] K_EQ = 2'd0, K_LT = 2'd1, K_GT = 2'd2;

    localparam [63:0] MAX_INT = 64'd9007199254740991; // 2^53 - 1
    localparam [25:0] POS_MAX = 26'h3ffffff;

    // Literals: 0 = true, 1 = false, 2 = null.
    function [7:0] lit_char;
        input [1:0] word;
        input [2:0] at;
        begin
            case ({word, at})
                {2'd0, 3'd1}: lit_char = "r";
                {2'd0, 3'd2}: lit_char = "u";
                {2'd0, 3'd3}: lit_char = "e";
                {2'd1, 3'd1}: lit_char = "a";
                {2'd1, 3'd2}: lit_char = "l";
                {2'd1, 3'd3}: lit_char = "s";
                {2'd1, 3'd4}: lit_char = "e";
                {2'd2, 3'd1}: lit_char = "u";
                {2'd2, 3'd2}: lit_char = "l";
                {2'd2, 3'd3}: lit_char = "l";
                default:      lit_char = 8'h00;
            endcase
        end
    endfunction

    function [2:0] lit_len;
        input [1:0] word;
        begin
            lit_len = (word == 2'd1) ? 3'd5 : 3'd4;
        end
    endfunction

    // The allowed characters below U+0800 as a 2048 x 1 ROM filled from the same function (one
    // lookup instead of the comparator tree for the common case); above, the comparator tree.
    reg     low_allowed [0:2047];
    integer low_i;
    initial
        for (low_i = 0; low_i < 2048; low_i = low_i + 1)
            low_allowed[low_i] = charclass_allowed(low_i[20:0]);

    reg cp_allowed;

    // ---- Frame registers ----
    reg  [1:0]   phase;
    reg  [25:0]  pos;          // bytes of the frame so far (saturating)
    reg  [3:0]   hdr_err;      // first header error, 0 = none
    reg          sess_nz;      // a session byte so far was not zero
    reg  [31:0]  plen;         // payload_length
    reg  [255:0] want_hash;    // payload_sha256
    reg  [3:0]   perr;         // first payload error, 0 = none

    // UTF-8 decoder.
    reg  [1:0]   u_need;       // continuation bytes still expected
    reg  [20:0]  u_cp;
    reg  [7:0]   u_lo, u_hi;   // range of the next continuation byte

    // Canonical-JSON state machine.
    reg  [3:0]   js;
    reg  [5:0]   sp;           // open containers (0..32)
    reg  [31:0]  stk;          // per level: 1 = object
    reg          n_minus, n_zero;
    reg  [63:0]  n_int;
    reg  [1:0]   l_word;
    reg  [2:0]   l_at;

    // Keys: one previous key per level, in place.
    reg  [7:0]   keymem [0:8191];  // {level, byte index}
    reg  [8:0]   prev_len [0:31];
    reg  [31:0]  prev_ok;          // per level: a previous key exists
    reg  [8:0]   klen;             // bytes of the key being read
    reg  [1:0]   kcmp;
    // Synchronous read port: the previous key's byte at the position the next key byte will
    // take ({level, klen} after this clock), read one clock ahead (block RAM style).
    reg  [7:0]   prev_q;
    reg  [4:0]   rd_lvl;
    reg  [7:0]   rd_klen;

    // ---- SHA-256 of the payload ----
    wire         sha_ready, sha_valid;
    wire [255:0] sha_digest;
    wire         beat = (in_valid || in_last) && in_ready;
    wire         byte_in = beat && in_valid;
    wire [32:0]  frame_len = 33'd64 + {1'b0, plen};
    wire         in_payload = (pos >= 26'd64) && ({7'd0, pos} < frame_len) && (hdr_err == 4'd0);
    wire         end_hash;     // end of frame, everything but the hash accepted
    wire [3:0]   end_reason;

    assign in_ready = (phase == P_RUN) && sha_ready;

    sha256 hasher (
        .clk(clk),
        .rst(rst),
        .init(phase == P_NEXT),
        .in_valid(byte_in && in_payload),
        .in_byte(in_data),
        .in_ready(sha_ready),
        .finish(phase == P_END && end_hash),
        .digest_valid(sha_valid),
        .digest(sha_digest)
    );

    // ---- End of frame: the spec's priority ----
    assign end_reason =
        (pos < 26'd64)                 ? TRUNCATED :
        (hdr_err != 4'd0)              ? hdr_err :
        ({7'd0, pos} < frame_len)      ? TRUNCATED :
        ({7'd0, pos} > frame_len)      ? TRAILING :
        (perr != 4'd0)                 ? perr :
        (u_need != 2'd0)               ? BAD_UTF8 :
        (js != J_DONE)                 ? BAD_JSON :
                                         ACCEPT;
    assign end_hash = (end_reason == ACCEPT);

    // ---- Per-byte work (combinational) ----
    reg         u_err, cp_done;
    reg  [20:0] cp;
    reg  [1:0]  u_need_n;
    reg  [20:0] u_cp_n;
    reg  [7:0]  u_lo_n, u_hi_n;
    reg  [4:0]  lvl;           // current container level (sp - 1)
    reg         key_byte;      // this byte belongs to the key being read
    reg  [7:0]  prev_byte;
    reg  [1:0]  kcmp_n;
    reg  [3:0]  err;           // payload error at this byte, 0 = none
    reg  [3:0]  js_n;
    reg         push, push_obj, pop, key_end;
    reg  [63:0] n_int_n;
    reg         n_minus_n, n_zero_n;
    reg  [1:0]  l_word_n;
    reg  [2:0]  l_at_n;
    reg         top_obj;

    // Evaluated for each payload byte from the clocked block below (blocking variables only:
    // combinational logic in front of the registers).
    task payload_step;
    begin
        // UTF-8: one byte.
        u_err = 1'b0;
        cp_done = 1'b0;
        cp = 21'd0;
        u_need_n = u_need;
        u_cp_n = u_cp;
        u_lo_n = u_lo;
        u_hi_n = u_hi;
        if (u_need == 2'd0) begin
            u_lo_n = 8'h80;
            u_hi_n = 8'hBF;
            if (in_data <= 8'h7F) begin
                cp_done = 1'b1;
                cp = {13'd0, in_data};
            end else if (in_data >= 8'hC2 && in_data <= 8'hDF) begin
                u_need_n = 2'd1;
                u_cp_n = {16'd0, in_data[4:0]};
            end else if (in_data == 8'hE0) begin
                u_need_n = 2'd2;
                u_cp_n = 21'd0;
                u_lo_n = 8'hA0;
            end else if (in_data == 8'hED) begin
                u_need_n = 2'd2;
                u_cp_n = 21'h0D;
                u_hi_n = 8'h9F;
            end else if (in_data >= 8'hE1 && in_data <= 8'hEF) begin
                u_need_n = 2'd2;
                u_cp_n = {17'd0, in_data[3:0]};
            end else if (in_data == 8'hF0) begin
                u_need_n = 2'd3;
                u_cp_n = 21'd0;
                u_lo_n = 8'h90;
            end else if (in_data >= 8'hF1 && in_data <= 8'hF3) begin
                u_need_n = 2'd3;
                u_cp_n = {18'd0, in_data[2:0]};
            end else if (in_data == 8'hF4) begin
                u_need_n = 2'd3;
                u_cp_n = 21'h04;
                u_hi_n = 8'h8F;
            end else begin
                u_err = 1'b1;
            end
        end else begin
            if (in_data < u_lo || in_data > u_hi) begin
                u_err = 1'b1;
            end else begin
                u_cp_n = {u_cp[14:0], in_data[5:0]};
                u_need_n = u_need - 2'd1;
                u_lo_n = 8'h80;
                u_hi_n = 8'hBF;
                if (u_need == 2'd1) begin
                    cp_done = 1'b1;
                    cp = {u_cp[14:0], in_data[5:0]};
                end
            end
        end

        // Keys: every byte in state KEY except a closing quote or a backslash (both are
        // single-byte code points) is compared with the previous key and stored in its place.
        lvl = sp[4:0] - 5'd1;
        key_byte = (js == J_KEY) && !(u_need == 2'd0 && (in_data == 8'h22 || in_data == 8'h5C));
        prev_byte = prev_q;
        kcmp_n = kcmp;
        if (key_byte && kcmp == K_EQ) begin
            if (klen >= prev_len[lvl])
                kcmp_n = K_GT;
            else if (in_data < prev_byte)
                kcmp_n = K_LT;
            else if (in_data > prev_byte)
                kcmp_n = K_GT;
        end

        // The grammar, at the end of a code point.
        err = 4'd0;
        js_n = js;
        push = 1'b0;
        push_obj = 1'b0;
        pop = 1'b0;
        key_end = 1'b0;
        n_int_n = n_int;
        n_minus_n = n_minus;
        n_zero_n = n_zero;
        l_word_n = l_word;
        l_at_n = l_at;
        top_obj = stk[lvl];
        if (u_err) begin
            err = BAD_UTF8;
        end else if (cp_done) begin
            if (cp < 21'h800)
                cp_allowed = low_allowed[cp[10:0]];
            else
                cp_allowed = charclass_allowed(cp);
            if (!cp_allowed) begin
                err = BAD_CHAR;
            end else if (cp == 21'h20 && js != J_STR && js != J_STR_ESC && js != J_KEY) begin
                err = NOT_CANONICAL;
            end else begin
                case (js)
                    J_START:
                        if (cp == 21'h7B) begin
                            push = 1'b1;
                            push_obj = 1'b1;
                        end else
                            err = BAD_JSON;
                    J_OBJ_FIRST, J_OBJ_KEY:
                        if (cp == 21'h22)
                            js_n = J_KEY;
                        else if (cp == 21'h7D && js == J_OBJ_FIRST)
                            pop = 1'b1;
                        else
                            err = BAD_JSON;
                    J_KEY:
                        if (cp == 21'h5C)
                            err = NOT_CANONICAL;
                        else if (cp == 21'h22) begin
                            if (prev_ok[lvl] && kcmp != K_GT)
                                err = NOT_CANONICAL;
                            else begin
                                key_end = 1'b1;
                                js_n = J_COLON;
                            end
                        end else if (klen + 9'd1 > 9'd255)
                            err = LIMIT;
                    J_COLON:
                        if (cp == 21'h3A)
                            js_n = J_VALUE;
                        else
                            err = BAD_JSON;
                    J_STR:
                        if (cp == 21'h5C)
                            js_n = J_STR_ESC;
                        else if (cp == 21'h22)
                            js_n = J_AFTER;
                    J_STR_ESC:
                        if (cp == 21'h22 || cp == 21'h5C)
                            js_n = J_STR;
                        else if (cp == 21'h2F || cp == 21'h62 || cp == 21'h66 || cp == 21'h6E ||
                                 cp == 21'h72 || cp == 21'h74 || cp == 21'h75)
                            err = NOT_CANONICAL;
                        else
                            err = BAD_JSON;
                    J_NUM:
                        if (cp >= 21'h30 && cp <= 21'h39) begin
                            if (n_minus) begin
                                if (cp == 21'h30)
                                    err = NOT_CANONICAL;
                                else begin
                                    n_int_n = {60'd0, cp[3:0]};
                                    n_minus_n = 1'b0;
                                end
                            end else if (n_zero)
                                err = NOT_CANONICAL;
                            else begin
                                n_int_n = n_int * 64'd10 + {60'd0, cp[3:0]};
                                if (n_int_n > MAX_INT)
                                    err = LIMIT;
                            end
                        end else if (n_minus)
                            err = BAD_JSON;
                        else if (cp == 21'h2E || cp == 21'h65 || cp == 21'h45)
                            err = NOT_CANONICAL;
                        else if ((cp == 21'h2C && top_obj))
                            js_n = J_OBJ_KEY;
                        else if (cp == 21'h2C)
                            js_n = J_VALUE;
                        else if ((cp == 21'h7D && top_obj) || (cp == 21'h5D && !top_obj))
                            pop = 1'b1;
                        else
                            err = BAD_JSON;
                    J_LIT:
                        if (l_at < lit_len(l_word)) begin
                            if (cp == {13'd0, lit_char(l_word, l_at)})
                                l_at_n = l_at + 3'd1;
                            else
                                err = BAD_JSON;
                        end else if (cp == 21'h2C && top_obj)
                            js_n = J_OBJ_KEY;
                        else if (cp == 21'h2C)
                            js_n = J_VALUE;
                        else if ((cp == 21'h7D && top_obj) || (cp == 21'h5D && !top_obj))
                            pop = 1'b1;
                        else
                            err = BAD_JSON;
                    J_AFTER:
                        if (cp == 21'h2C && top_obj)
                            js_n = J_OBJ_KEY;
                        else if (cp == 21'h2C)
                            js_n = J_VALUE;
                        else if ((cp == 21'h7D && top_obj) || (cp == 21'h5D && !top_obj))
                            pop = 1'b1;
                        else
                            err = BAD_JSON;
                    J_VALUE, J_ARR_FIRST:
                        if (js == J_ARR_FIRST && cp == 21'h5D)
                            pop = 1'b1;
                        else if (cp == 21'h7B || cp == 21'h5B) begin
                            push = 1'b1;
                            push_obj = (cp == 21'h7B);
                        end else if (cp == 21'h22)
                            js_n = J_STR;
                        else if (cp == 21'h2D) begin
                            js_n = J_NUM;
                            n_int_n = 64'd0;
                            n_minus_n = 1'b1;
                            n_zero_n = 1'b0;
                        end else if (cp == 21'h30) begin
                            js_n = J_NUM;
                            n_int_n = 64'd0;
                            n_minus_n = 1'b0;
                            n_zero_n = 1'b1;
                        end else if (cp >= 21'h31 && cp <= 21'h39) begin
                            js_n = J_NUM;
                            n_int_n = {60'd0, cp[3:0]};
                            n_minus_n = 1'b0;
                            n_zero_n = 1'b0;
                        end else if (cp == 21'h74 || cp == 21'h66 || cp == 21'h6E) begin
                            js_n = J_LIT;
                            l_word_n = (cp == 21'h74) ? 2'd0 : (cp == 21'h66) ? 2'd1 : 2'd2;
                            l_at_n = 3'd1;
                        end else
                            err = BAD_JSON;
                    default: // J_DONE
                        err = BAD_JSON;
                endcase
                if (push) begin
                    if (sp == 6'd32) begin
                        err = LIMIT;
                        push = 1'b0;
                    end else
                        js_n = push_obj ? J_OBJ_FIRST : J_ARR_FIRST;
                end
                if (pop)
                    js_n = (sp == 6'd1) ? J_DONE : J_AFTER;
            end
        end
    end
    endtask

    // ---- Registers ----
    always @(posedge clk) begin
        done <= 1'b0;
        if (rst || phase == P_NEXT) begin
            phase <= P_RUN;
            pos <= 26'd0;
            hdr_err <= 4'd0;
            sess_nz <= 1'b0;
            plen <= 32'd0;
            perr <= 4'd0;
            u_need <= 2'd0;
            u_cp <= 21'd0;
            u_lo <= 8'h80;
            u_hi <= 8'hBF;
            js <= J_START;
            sp <= 6'd0;
            stk <= 32'd0;
            prev_ok <= 32'd0;
            klen <= 9'd0;
            kcmp <= K_EQ;
            n_minus <= 1'b0;
            n_zero <= 1'b0;
            n_int <= 64'd0;
            l_word <= 2'd0;
            l_at <= 3'd0;
            if (rst)
                reason <= ACCEPT;
        end else begin
            case (phase)
                P_RUN: begin
                    rd_lvl = sp[4:0] - 5'd1;
                    rd_klen = klen[7:0];
                    if (byte_in) begin
                        if (pos != POS_MAX)
                            pos <= pos + 26'd1;
                        // Header, in offset order: the first error stays.
                        if (pos < 26'd64 && hdr_err == 4'd0) begin
                            if (pos < 26'd4) begin
                                if (in_data != (pos == 26'd0 ? 8'h47 : pos == 26'd1 ? 8'h57 :
                                                pos == 26'd2 ? 8'h44 : 8'h46))
                                    hdr_err <= BAD_MAGIC;
                            end else if (pos == 26'd4) begin
                                if (in_data != 8'h01)
                                    hdr_err <= BAD_VERSION;
                            end else if (pos == 26'd5) begin
                                if (in_data == 8'h00 || in_data > 8'h03)
                                    hdr_err <= BAD_TYPE;
                            end else if (pos < 26'd8) begin
                                if (in_data != 8'h00)
                                    hdr_err <= BAD_FLAGS;
                            end else if (pos < 26'd16) begin
                                if (pos == 26'd15 && !sess_nz && in_data == 8'h00)
                                    hdr_err <= BAD_SESSION;
                            end else if (pos >= 26'd24 && pos < 26'd28) begin
                                if (pos == 26'd27 &&
                                    ({plen[23:0], in_data} < 32'd2 ||
                                     {plen[23:0], in_data} > 32'h01000000))
                                    hdr_err <= BAD_LENGTH;
                            end else if (pos >= 26'd28 && pos < 26'd32) begin
                                if (in_data != 8'h00)
                                    hdr_err <= BAD_RESERVED;
                            end
                        end
                        if (pos >= 26'd8 && pos < 26'd16 && in_data != 8'h00)
                            sess_nz <= 1'b1;
                        if (pos >= 26'd24 && pos < 26'd28)
                            plen <= {plen[23:0], in_data};
                        if (pos >= 26'd32 && pos < 26'd64)
                            want_hash <= {want_hash[247:0], in_data};
                        // Payload, until its first error.
                        if (in_payload && perr == 4'd0) begin
                            payload_step;
                            if (err != 4'd0) begin
                                perr <= err;
                            end else begin
                                u_need <= u_need_n;
                                u_cp <= u_cp_n;
                                u_lo <= u_lo_n;
                                u_hi <= u_hi_n;
                                if (key_byte) begin
                                    if (klen < 9'd255)
                                        keymem[{lvl, klen[7:0]}] <= in_data;
                                    klen <= klen + 9'd1;
                                    kcmp <= kcmp_n;
                                    rd_klen = klen[7:0] + 8'd1;
                                end
                                if (cp_done) begin
                                    js <= js_n;
                                    n_int <= n_int_n;
                                    n_minus <= n_minus_n;
                                    n_zero <= n_zero_n;
                                    l_word <= l_word_n;
                                    l_at <= l_at_n;
                                    if (js_n == J_KEY && js != J_KEY) begin
                                        klen <= 9'd0;
                                        kcmp <= K_EQ;
                                        rd_klen = 8'd0;
                                    end
                                    if (key_end) begin
                                        prev_ok[lvl] <= 1'b1;
                                        prev_len[lvl] <= klen;
                                    end
                                    if (push) begin
                                        stk[sp[4:0]] <= push_obj;
                                        prev_ok[sp[4:0]] <= 1'b0;
                                        sp <= sp + 6'd1;
                                        rd_lvl = sp[4:0];
                                    end
                                    if (pop) begin
                                        sp <= sp - 6'd1;
                                        rd_lvl = sp[4:0] - 5'd2;
                                    end
                                end
                            end
                        end
                    end
                    if (beat && in_last)
                        phase <= P_END;
                    prev_q <= keymem[{rd_lvl, rd_klen}];
                end
                P_END: begin
                    if (end_hash)
                        phase <= P_HASH;
                    else begin
                        done <= 1'b1;
                        reason <= end_reason;
                        phase <= P_NEXT;
                    end
                end
                P_HASH: begin
                    if (sha_valid) begin
                        done <= 1'b1;
                        reason <= (sha_digest == want_hash) ? ACCEPT : BAD_HASH;
                        phase <= P_NEXT;
                    end
                end
                default: phase <= P_RUN;
            endcase
        end
    end
endmodule
`default_nettype wire
