// SHA-256 (FIPS 180-4) over a byte stream, for the diode frame verifier (hw/FRAMES.md).
//
// Interface: `init` starts a new message; bytes are taken on `in_valid && in_ready`; `finish`
// (one cycle, after the last byte) appends the padding (0x80, zeros, the 64-bit message length
// in bits) and `digest_valid` rises when the digest of the whole message is in `digest`
// (H0 in bits 255:224). The message is collected in a 16-word block buffer; a full buffer is
// handed to the compression engine (one round per clock, 64 rounds, then the addition into H),
// which keeps the 16-word message schedule window (W[t..t+15]) in a shift register. While the
// engine runs, the next block is collected; `in_ready` falls only when that block is full too.
`timescale 1ns/1ps
`default_nettype none
module sha256 (
    input  wire         clk,
    input  wire         rst,
    input  wire         init,
    input  wire         in_valid,
    input  wire [7:0]   in_byte,
    output wire         in_ready,
    input  wire         finish,
    output reg          digest_valid,
    output wire [255:0] digest
);
    function [31:0] k_of;
        input [5:0] t;
        begin
            case (t)
                6'd0:  k_of = 32'h428a2f98; 6'd1:  k_of = 32'h71374491; 6'd2:  k_of = 32'hb5c0fbcf; 6'd3:  k_of = 32'he9b5dba5;
                6'd4:  k_of = 32'h3956c25b; 6'd5:  k_of = 32'h59f111f1; 6'd6:  k_of = 32'h923f82a4; 6'd7:  k_of = 32'hab1c5ed5;
                6'd8:  k_of = 32'hd807aa98; 6'd9:  k_of = 32'h12835b01; 6'd10: k_of = 32'h243185be; 6'd11: k_of = 32'h550c7dc3;
                6'd12: k_of = 32'h72be5d74; 6'd13: k_of = 32'h80deb1fe; 6'd14: k_of = 32'h9bdc06a7; 6'd15: k_of = 32'hc19bf174;
                6'd16: k_of = 32'he49b69c1; 6'd17: k_of = 32'hefbe4786; 6'd18: k_of = 32'h0fc19dc6; 6'd19: k_of = 32'h240ca1cc;
                6'd20: k_of = 32'h2de92c6f; 6'd21: k_of = 32'h4a7484aa; 6'd22: k_of = 32'h5cb0a9dc; 6'd23: k_of = 32'h76f988da;
                6'd24: k_of = 32'h983e5152; 6'd25: k_of = 32'ha831c66d; 6'd26: k_of = 32'hb00327c8; 6'd27: k_of = 32'hbf597fc7;
                6'd28: k_of = 32'hc6e00bf3; 6'd29: k_of = 32'hd5a79147; 6'd30: k_of = 32'h06ca6351; 6'd31: k_of = 32'h14292967;
                6'd32: k_of = 32'h27b70a85; 6'd33: k_of = 32'h2e1b2138; 6'd34: k_of = 32'h4d2c6dfc; 6'd35: k_of = 32'h53380d13;
                6'd36: k_of = 32'h650a7354; 6'd37: k_of = 32'h766a0abb; 6'd38: k_of = 32'h81c2c92e; 6'd39: k_of = 32'h92722c85;
                6'd40: k_of = 32'ha2bfe8a1; 6'd41: k_of = 32'ha81a664b; 6'd42: k_of = 32'hc24b8b70; 6'd43: k_of = 32'hc76c51a3;
                6'd44: k_of = 32'hd192e819; 6'd45: k_of = 32'hd6990624; 6'd46: k_of = 32'hf40e3585; 6'd47: k_of = 32'h106aa070;
                6'd48: k_of = 32'h19a4c116; 6'd49: k_of = 32'h1e376c08; 6'd50: k_of = 32'h2748774c; 6'd51: k_of = 32'h34b0bcb5;
                6'd52: k_of = 32'h391c0cb3; 6'd53: k_of = 32'h4ed8aa4a; 6'd54: k_of = 32'h5b9cca4f; 6'd55: k_of = 32'h682e6ff3;
                6'd56: k_of = 32'h748f82ee; 6'd57: k_of = 32'h78a5636f; 6'd58: k_of = 32'h84c87814; 6'd59: k_of = 32'h8cc70208;
                6'd60: k_of = 32'h90befffa; 6'd61: k_of = 32'ha4506ceb; 6'd62: k_of = 32'hbef9a3f7; default: k_of = 32'hc67178f2;
            endcase
        end
    endfunction


    // Hash state H0..H7.
    reg [31:0] h0, h1, h2, h3, h4, h5, h6, h7;
    assign digest = {h0, h1, h2, h3, h4, h5, h6, h7};

    // Block buffer: bytes shift into `buf_w` (word 15 = last), `buf_n` bytes so far.
    reg [511:0] buf_w;
    reg [6:0]   buf_n;          // 0..64
    reg [63:0]  msg_bits;       // message length in bits (data bytes only)

    // Padding: after `finish`, bytes come from here instead of the input.
    reg         padding;        // padding bytes still to insert
    reg         pad_first;      // next pad byte is 0x80
    reg [3:0]   pad_len_i;      // length bytes inserted (0..8) once the block is at 56
    reg         pad_done;       // every padding byte inserted

    // Compression engine.
    reg         busy;
    reg         adding;         // final addition into H
    reg [5:0]   t;
    reg [511:0] w;              // schedule window: W[t] in bits 511:480
    reg [31:0]  a, b, c, d, e, f, g, h;

    wire buf_full = (buf_n == 7'd64);
    assign in_ready = !buf_full && !padding && !pad_done;

    // Pad byte source.
    wire        pad_len_phase = !pad_first && (buf_n == 7'd56 || pad_len_i != 4'd0);
    wire [7:0]  pad_byte = pad_first ? 8'h80
                         : pad_len_phase ? msg_bits[63 - 8 * pad_len_i -: 8]
                         : 8'h00;
    wire        take_in  = in_valid && in_ready;
    wire        take_pad = padding && !buf_full;
    wire        take     = take_in || take_pad;
    wire [7:0]  take_byte = take_pad ? pad_byte : in_byte;

    // One round and the next schedule word W[t+16] = σ1(W[t+14]) + W[t+9] + σ0(W[t+1]) + W[t],
    // computed in the clocked block below (blocking variables: combinational logic).
    reg [31:0] w_t, w1, w9, w14, s0, s1, ch, maj, t1, t2, ls0, ls1, w_16;
    wire start = buf_full && !busy && !adding;

    always @(posedge clk) begin
        if (rst || init) begin
            h0 <= 32'h6a09e667; h1 <= 32'hbb67ae85; h2 <= 32'h3c6ef372; h3 <= 32'ha54ff53a;
            h4 <= 32'h510e527f; h5 <= 32'h9b05688c; h6 <= 32'h1f83d9ab; h7 <= 32'h5be0cd19;
            buf_n <= 7'd0;
            msg_bits <= 64'd0;
            padding <= 1'b0;
            pad_first <= 1'b0;
            pad_len_i <= 4'd0;
            pad_done <= 1'b0;
            busy <= 1'b0;
            adding <= 1'b0;
            t <= 6'd0;
            digest_valid <= 1'b0;
        end else begin
            if (finish && !padding && !pad_done) begin
                padding <= 1'b1;
                pad_first <= 1'b1;
            end
            if (take_in)
                msg_bits <= msg_bits + 64'd8;
            if (take_pad) begin
                pad_first <= 1'b0;
                if (pad_len_phase) begin
                    pad_len_i <= pad_len_i + 4'd1;
                    if (pad_len_i == 4'd7) begin
                        padding <= 1'b0;
                        pad_done <= 1'b1;
                    end
                end
            end
            // The block buffer: hand a full block to an idle engine, else collect.
            if (start) begin
                w <= buf_w;
                a <= h0; b <= h1; c <= h2; d <= h3; e <= h4; f <= h5; g <= h6; h <= h7;
                busy <= 1'b1;
                t <= 6'd0;
                buf_n <= 7'd0;
            end else if (take) begin
                buf_w <= {buf_w[503:0], take_byte};
                buf_n <= buf_n + 7'd1;
            end
            if (busy) begin
                w_t = w[511:480];
                w1 = w[479:448];
                w9 = w[223:192];
                w14 = w[63:32];
                s1 = {e[5:0], e[31:6]} ^ {e[10:0], e[31:11]} ^ {e[24:0], e[31:25]};
                ch = (e & f) ^ (~e & g);
                t1 = h + s1 + ch + k_of(t) + w_t;
                s0 = {a[1:0], a[31:2]} ^ {a[12:0], a[31:13]} ^ {a[21:0], a[31:22]};
                maj = (a & b) ^ (a & c) ^ (b & c);
                t2 = s0 + maj;
                ls0 = {w1[6:0], w1[31:7]} ^ {w1[17:0], w1[31:18]} ^ (w1 >> 3);
                ls1 = {w14[16:0], w14[31:17]} ^ {w14[18:0], w14[31:19]} ^ (w14 >> 10);
                w_16 = ls1 + w9 + ls0 + w_t;
                h <= g; g <= f; f <= e; e <= d + t1;
                d <= c; c <= b; b <= a; a <= t1 + t2;
                w <= {w[479:0], w_16};
                t <= t + 6'd1;
                if (t == 6'd63) begin
                    busy <= 1'b0;
                    adding <= 1'b1;
                end
            end
            if (adding) begin
                h0 <= h0 + a; h1 <= h1 + b; h2 <= h2 + c; h3 <= h3 + d;
                h4 <= h4 + e; h5 <= h5 + f; h6 <= h6 + g; h7 <= h7 + h;
                adding <= 1'b0;
            end
            if (pad_done && buf_n == 7'd0 && !busy && !adding && !start)
                digest_valid <= 1'b1;
        end
    end
endmodule
`default_nettype wire
