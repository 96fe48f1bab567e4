package torch
import ("testing";"time")
func TestTimingTmp(t *testing.T){
 d:=openCPU(t); m,_:=d.NewModel(t.Context(),ModelOptions{Arch:ArchOSNetX0_25})
 b:=Batch{N:1,Height:256,Width:128,Pix:make([]byte,256*128*3)}
 for i:=0;i<5;i++{ s:=time.Now(); m.Features(t.Context(),b,false); t.Log("fwd",time.Since(s)) }
 b=Batch{N:32,Height:256,Width:128,Pix:make([]byte,32*256*128*3)}
 for i:=0;i<3;i++{ s:=time.Now(); m.Features(t.Context(),b,false); t.Log("fwd32",time.Since(s)) }
}
